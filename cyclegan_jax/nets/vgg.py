"""VGG-16 up to relu4_2, in Flax, NHWC, on torchvision's `vgg16-397923af.pth` weights.

The "feature loss + GAN" baseline of the CycleGAN paper compares images by their
VGG-16 `relu4_2` activations (Simonyan & Zisserman 2015; Johnson et al. 2016's
perceptual loss). torchvision's `vgg16().features` is a `Sequential`: 3×3 convs
(padding 1) each followed by ReLU, and 2×2 max pools; relu4_2 is the output of
`features[20]`, after the convs `features.{0,2,5,7,10,12,14,17,19}`. Only those keys
are read; the file's later layers and classifier are ignored.

Input handling is torchvision's: images in [0, 1], normalised with the ImageNet mean
and standard deviation; the networks here work in [-1, 1], so `imagenet_normalise`
maps from there. A one-channel image is repeated to gray RGB.

Weights: the user supplies torchvision's file (`WEIGHTS_URL`), by config field or
$CYCLEGAN_JAX_VGG_WEIGHTS, read without torch by `torch_weights.read_state_dict`.
"""

from __future__ import annotations

import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cyclegan_jax.nets import torch_weights

PyTree = Any
WEIGHTS_FILE = 'vgg16-397923af.pth'
WEIGHTS_URL = 'https://download.pytorch.org/models/' + WEIGHTS_FILE
WEIGHTS_ENV = 'CYCLEGAN_JAX_VGG_WEIGHTS'
CONFIG_FIELD = 'baseline.vgg_weights'
# torchvision's ImageNet statistics (`transforms.Normalize` in its model docs).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (index in `features`, output channels) of each conv up to relu4_2; 'M': a 2×2 pool.
LAYERS: tuple[tuple[int, int] | str, ...] = (
  (0, 64),
  (2, 64),
  'M',
  (5, 128),
  (7, 128),
  'M',
  (10, 256),
  (12, 256),
  (14, 256),
  'M',
  (17, 512),
  (19, 512),
)
FEATURES = 512  # Channels of relu4_2.


def conv_indices() -> tuple[int, ...]:
  """The `features` indices of the convs this network holds."""
  return tuple(layer[0] for layer in LAYERS if layer != 'M')


def imagenet_normalise(images: jax.Array) -> jax.Array:
  """[N, H, W, 1 or 3] in [-1, 1] → torchvision's input: [0, 1], then (x − mean) / std."""
  x = images.astype(jnp.float32)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
  std = jnp.asarray(IMAGENET_STD, jnp.float32)
  return ((x + 1.0) * 0.5 - mean) / std


class Vgg16Relu42(nn.Module):
  """VGG-16's `features[:21]` on normalised images: [N, H, W, 3] → relu4_2 [N, H/8,
  W/8, 512]. Convs are named `features_{index}` after their torchvision key."""

  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.astype(self.dtype)
    for layer in LAYERS:
      if layer == 'M':
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        continue
      index, features = layer
      x = nn.Conv(
        features,
        (3, 3),
        padding=((1, 1), (1, 1)),
        dtype=self.dtype,
        name=f'features_{index}',
      )(x)
      x = nn.relu(x)
    return x


def variables_from_state_dict(state_dict: dict[str, np.ndarray]) -> PyTree:
  """torchvision VGG-16 state dict → {'params': ...} of `Vgg16Relu42`, float32.

  Raises:
    torch_weights.WeightsFileError: a needed key is missing or has another shape.
  """
  sd = {k.removeprefix('module.'): v for k, v in state_dict.items()}
  params = {}
  in_channels = 3
  for layer in LAYERS:
    if layer == 'M':
      continue
    index, features = layer
    shapes = {
      'weight': (features, in_channels, 3, 3),
      'bias': (features,),
    }
    for name, shape in shapes.items():
      key = f'features.{index}.{name}'
      if key not in sd:
        raise torch_weights.WeightsFileError(
          f'not a torchvision VGG-16 state dict: key {key!r} is missing'
        )
      if tuple(sd[key].shape) != shape:
        raise torch_weights.WeightsFileError(
          f'not a torchvision VGG-16 state dict: {key!r} has shape '
          f'{tuple(sd[key].shape)}, expected {shape}'
        )
    weight = np.asarray(sd[f'features.{index}.weight'], np.float32)
    params[f'features_{index}'] = {
      'kernel': np.ascontiguousarray(weight.transpose(2, 3, 1, 0)),  # OIHW → HWIO.
      'bias': np.asarray(sd[f'features.{index}.bias'], np.float32),
    }
    in_channels = features
  return {'params': params}


def load_weights(path: str | os.PathLike[str]) -> PyTree:
  """Reads torchvision's `vgg16-397923af.pth` (or one in its layout).

  Raises:
    torch_weights.WeightsFileError: unsafe, truncated or not VGG-16 (names the file).
  """
  state_dict = torch_weights.read_state_dict(path)
  try:
    return variables_from_state_dict(state_dict)
  except torch_weights.WeightsFileError as e:
    raise torch_weights.WeightsFileError(f'{os.fspath(path)}: {e}') from None


def weights_path(config_value: str | None) -> str | None:
  """The weights file: the config value, else $CYCLEGAN_JAX_VGG_WEIGHTS."""
  return config_value or os.environ.get(WEIGHTS_ENV) or None


def missing_weights_message(what: str) -> str:
  """One line: `what` needs the weights, and where to get and pass them."""
  return (
    f'{what} needs the VGG-16 weights: download {WEIGHTS_URL} and pass its path '
    f'with --config.{CONFIG_FIELD}=PATH (or set {WEIGHTS_ENV}).'
  )


def require_weights(config_value: str | None, what: str) -> PyTree:
  """The weights from the config value or the environment.

  Raises:
    ValueError: none given, or the file does not exist (one line).
    torch_weights.WeightsFileError: the file is not VGG-16.
  """
  path = weights_path(config_value)
  if not path:
    raise ValueError(missing_weights_message(what))
  if not os.path.isfile(path):
    raise ValueError(
      f'{what}: the VGG-16 weights file {path} does not exist; download '
      f'{WEIGHTS_URL} and pass its path with --config.{CONFIG_FIELD}=PATH.'
    )
  return load_weights(path)


def feature_distance(
  variables: PyTree, x: jax.Array, y: jax.Array, dtype: Any = jnp.float32
) -> jax.Array:
  """Mean |relu4_2(x) − relu4_2(y)| over every element, for images in [-1, 1]; `x` is
  the reference side (no gradient flows into it)."""
  net = Vgg16Relu42(dtype=dtype)
  fx = jax.lax.stop_gradient(net.apply(variables, imagenet_normalise(x)))
  fy = net.apply(variables, imagenet_normalise(y))
  return jnp.mean(jnp.abs(fy.astype(jnp.float32) - fx.astype(jnp.float32)))
