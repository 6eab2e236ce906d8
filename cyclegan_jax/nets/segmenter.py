"""A small U-Net that labels each pixel of a photo: the FCN-score's segmenter.

The papers score labels→photo by segmenting the generated photos with an FCN-8s trained
on Cityscapes; `cyclegan_jax.evaluation.fcn_score` trains this smaller network once on a
benchmark's real (photo, label) pairs instead. Levels of two 3×3 conv + ReLU, 2×2
average pooling down, 2× nearest upsampling and a skip concatenation up, then a 1×1
conv to one logit per class.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class Segmenter(nn.Module):
  """Per-pixel class logits of NHWC images in [-1, 1].

  Attributes:
    num_classes: logits per pixel.
    width: channels of the first level (doubled at each level down).
    depth: poolings; height and width must divide by 2**depth (`pad_multiple`).
  """

  num_classes: int
  width: int = 16
  depth: int = 3

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    multiple = 2**self.depth
    if x.shape[1] % multiple or x.shape[2] % multiple:
      raise ValueError(
        f'The segmenter needs sides divisible by {multiple}, got {x.shape[1]}x'
        f'{x.shape[2]}; pad the images first.'
      )
    skips = []
    for level in range(self.depth):
      x = self._block(x, self.width * 2**level, f'down_{level}')
      skips.append(x)
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = self._block(x, self.width * 2**self.depth, 'bottom')
    for level in reversed(range(self.depth)):
      x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
      x = jnp.concatenate([x, skips[level]], axis=-1)
      x = self._block(x, self.width * 2**level, f'up_{level}')
    return nn.Conv(self.num_classes, (1, 1), name='logits')(x)

  def _block(self, x: jax.Array, features: int, name: str) -> jax.Array:
    for i in range(2):
      x = nn.relu(nn.Conv(features, (3, 3), padding='SAME', name=f'{name}_{i}')(x))
    return x
