"""Grayscale and RGB images side by side: a domain has 1 or 3 channels.

`model.input_nc` / `model.output_nc` give domain A's and domain B's channels, as the
official code's `--input_nc` / `--output_nc`. Its data loader opens every file as RGB and
turns it to grayscale with torchvision's `Grayscale(1)`, i.e. PIL's `convert('L')`:
ITU-R 601-2 luma in fixed point, L = (19595 R + 38470 G + 7471 B + 2^15) >> 16, so a
gray file read as RGB comes back unchanged. `luma8` is that, bit for bit; `to_channels`
is the float version for images already in [-1, 1] (the weights sum to 1, so the scale
does not matter) and shows 1-channel images as gray RGB.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as PIL's 'L'.
_LUMA_FIXED = (19595, 38470, 7471)  # PIL's 16-bit fixed-point weights.


def luma8(image: np.ndarray) -> np.ndarray:
  """uint8 [..., 3] RGB -> uint8 [..., 1], exactly as PIL's `convert('L')`."""
  x = image.astype(np.int64)
  r, g, b = _LUMA_FIXED
  y = (r * x[..., 0] + g * x[..., 1] + b * x[..., 2] + (1 << 15)) >> 16
  return y.astype(np.uint8)[..., None]


def is_gray(image: np.ndarray) -> bool:
  """True for a [..., 3] image whose channels are equal (a gray file read as RGB)."""
  return bool(
    np.all(image[..., 0] == image[..., 1]) and np.all(image[..., 1] == image[..., 2])
  )


def match8(image: np.ndarray, channels: int) -> np.ndarray:
  """uint8 [..., 1 | 3] -> uint8 [..., channels]: luma for 3 -> 1, gray RGB for 1 -> 3."""
  have = image.shape[-1]
  if have == channels:
    return image
  if channels == 1:
    return luma8(image)
  return np.repeat(image, channels, axis=-1)


def to_channels(images: Any, channels: int) -> Any:
  """Float images [..., 1 | 3] (numpy or JAX) as [..., channels], in the same scale.

  3 -> 1 by the luma weights; 1 -> 3 as gray RGB (how sample grids show a 1-channel
  domain, and how pytorch-fid feeds a grayscale file to Inception).
  """
  have = images.shape[-1]
  if have == channels:
    return images
  if channels == 1:
    return (images @ LUMA.astype(images.dtype))[..., None]
  return images.repeat(channels, axis=-1)


def domain_channels(config: Any) -> dict[str, int]:
  """{'A': model.input_nc, 'B': model.output_nc} of a config (or of its `model`).

  Configs saved before these fields existed (and converted weights) mean RGB.
  """
  model = config.get('model', config) or {}
  return {'A': int(model.get('input_nc', 3)), 'B': int(model.get('output_nc', 3))}
