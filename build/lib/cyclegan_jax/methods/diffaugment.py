"""DiffAugment (Zhao et al. 2020): random, differentiable augmentation of critic inputs.

The same policy is applied to the real and the fake images every time a critic sees
them, so the critics cannot overfit a small training set and the generators are still
trained through the augmentation. The operations and their ranges are the paper's
(mit-han-lab/data-efficient-gans, DiffAugment_pytorch.py), on NHWC images in [-1, 1]:

* 'color': brightness + U(-0.5, 0.5), saturation × U(0, 2), contrast × U(0.5, 1.5);
* 'translation': an integer shift of up to 1/8 of each side, zero padded;
* 'cutout': one square of half the side, at a random centre, set to zero.

Each image of the batch draws its own parameters.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

POLICIES = ('color', 'translation', 'cutout')
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(policy: str) -> tuple[str, ...]:
  """'color,translation' -> ('color', 'translation'); '' -> () (off).

  Raises:
    ValueError: an unknown or repeated operation.
  """
  if not policy.strip():
    return ()
  names = tuple(name.strip() for name in policy.split(','))
  unknown = [name for name in names if name not in POLICIES]
  if unknown:
    raise ValueError(
      f'augment.policy: unknown operation {unknown[0]!r}; use a comma list of '
      + ', '.join(repr(p) for p in POLICIES)
    )
  if len(set(names)) != len(names):
    raise ValueError(f'augment.policy: {policy!r} names an operation twice')
  return names


def _uniform(key: jax.Array, x: jax.Array) -> jax.Array:
  """One U(0, 1) draw per image, shaped to broadcast over it."""
  return jax.random.uniform(key, (x.shape[0], 1, 1, 1), x.dtype)


def color(x: jax.Array, key: jax.Array) -> jax.Array:
  """Brightness, then saturation, then contrast, as the paper's 'color'."""
  k_brightness, k_saturation, k_contrast = jax.random.split(key, 3)
  x = x + (_uniform(k_brightness, x) - 0.5)
  mean = jnp.mean(x, axis=3, keepdims=True)
  x = (x - mean) * (_uniform(k_saturation, x) * 2.0) + mean
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) * (_uniform(k_contrast, x) + 0.5) + mean


def translation(x: jax.Array, key: jax.Array, ratio: float = TRANSLATION_RATIO):
  """Shifts each image by up to `ratio` of its sides (integers); the rest is zero."""
  batch, height, width, _ = x.shape
  shift_h, shift_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
  k_h, k_w = jax.random.split(key)
  dy = jax.random.randint(k_h, (batch,), -shift_h, shift_h + 1)
  dx = jax.random.randint(k_w, (batch,), -shift_w, shift_w + 1)
  padded = jnp.pad(x, ((0, 0), (shift_h, shift_h), (shift_w, shift_w), (0, 0)))
  # Output pixel (i, j) is input pixel (i + dy, j + dx), or zero outside the image.
  crop = lambda image, y0, x0: jax.lax.dynamic_slice(
    image, (y0, x0, 0), (height, width, image.shape[-1])
  )
  return jax.vmap(crop)(padded, shift_h + dy, shift_w + dx)


def cutout(x: jax.Array, key: jax.Array, ratio: float = CUTOUT_RATIO) -> jax.Array:
  """Zeroes one square of `ratio` of the sides per image, centred anywhere in it."""
  batch, height, width, _ = x.shape
  size_h, size_w = int(height * ratio + 0.5), int(width * ratio + 0.5)
  k_h, k_w = jax.random.split(key)
  # The reference's offsets: the square's centre, in [0, side + (1 - size % 2)).
  cy = jax.random.randint(k_h, (batch, 1), 0, height + (1 - size_h % 2))
  cx = jax.random.randint(k_w, (batch, 1), 0, width + (1 - size_w % 2))
  rows = jnp.arange(height)[None] - (cy - size_h // 2)
  cols = jnp.arange(width)[None] - (cx - size_w // 2)
  inside_h = (rows >= 0) & (rows < size_h)
  inside_w = (cols >= 0) & (cols < size_w)
  keep = ~(inside_h[:, :, None] & inside_w[:, None, :])
  return x * keep[..., None].astype(x.dtype)


OPERATIONS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
  'color': color,
  'translation': translation,
  'cutout': cutout,
}


def augment(x: jax.Array, key: jax.Array, policy: tuple[str, ...]) -> jax.Array:
  """Applies `policy`'s operations in its order, each with its own key; () is identity."""
  if not policy:
    return x
  for name, op_key in zip(policy, jax.random.split(key, len(policy))):
    x = OPERATIONS[name](x, op_key)
  return x
