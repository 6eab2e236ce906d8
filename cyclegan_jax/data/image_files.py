"""Image files on disk: which names count as images, and decoding them to 8-bit RGB.

One place for the folder data source, `translate` and every other reader, so that they
accept the same files and decode them the same way.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (
  '.jpg',
  '.jpeg',
  '.png',
  '.bmp',
  '.webp',
  '.tif',
  '.tiff',
  '.gif',
  '.ppm',
)
_HIGH_DEPTH_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N', 'I', 'F')


def is_image_name(name: str) -> bool:
  """True for a visible file name with one of `IMAGE_EXTENSIONS` (any case)."""
  base = os.path.basename(name)
  return not base.startswith('.') and base.lower().endswith(IMAGE_EXTENSIONS)


def list_images(directory: str) -> list[str]:
  """The image files of `directory` (not recursive), sorted by name."""
  return sorted(
    os.path.join(directory, f) for f in os.listdir(directory) if is_image_name(f)
  )


def describe_error(error: Exception) -> str:
  """'TypeName: message' (or the type alone), for one-line skip notes."""
  return f'{type(error).__name__}: {error}' if str(error) else type(error).__name__


def to_rgb8(im: Image.Image) -> np.ndarray:
  """8-bit RGB [H, W, 3] from any mode; 16/32-bit ones are rescaled, not clipped."""
  if im.mode in _HIGH_DEPTH_MODES:
    arr = np.asarray(im, dtype=np.float64)
    # 16-bit PNGs open as 'I;16' or 'I'; an 'I' image in [0, 255] is 8-bit data.
    top = 255.0 if arr.size and arr.max() <= 255 and im.mode in ('I', 'F') else 65535.0
    arr = np.clip(np.round(arr * (255.0 / top)), 0, 255).astype(np.uint8)
    return np.repeat(arr[..., None], 3, axis=-1)
  if im.mode == 'P' and 'transparency' in im.info:
    im = im.convert('RGBA')  # Avoids PIL's warning; alpha is dropped below.
  # As the reference: `Image.open(path).convert('RGB')` drops alpha.
  return np.asarray(im.convert('RGB'), dtype=np.uint8)


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
  if max_side is None or max(width, height) <= max_side:
    return width, height
  scale = max_side / max(width, height)
  return max(1, round(width * scale)), max(1, round(height * scale))


def read_rgb(path: str, max_side: int | None = None) -> np.ndarray:
  """Decodes any PIL-readable file as uint8 RGB [H, W, 3].

  Args:
    path: the file.
    max_side: if given, a longer image is downscaled (bicubic) to this longest side;
      huge JPEGs are decoded at a reduced DCT scale, never at full size.
  """
  with Image.open(path) as im:
    if max_side is not None and im.format == 'JPEG' and max(im.size) > max_side:
      im.draft('RGB', (max_side, max_side))
    im.load()
    size = _scaled_size(im.width, im.height, max_side)
    if size != im.size:
      im = im.resize(size, Image.BICUBIC)
    return to_rgb8(im)


def read_float(path: str) -> np.ndarray:
  """`read_rgb` as float32 in [0, 1], as evaluation scores saved images."""
  return read_rgb(path).astype(np.float32) / 255.0


def check_readable(path: str, max_side: int | None = None) -> tuple[int, int] | str:
  """(height, width) that `read_rgb` will produce, or why the file is unusable.

  Reads every byte (a truncated file is caught), fast: JPEGs at 1/8 scale.
  """
  if os.path.islink(path) and not os.path.exists(path):
    return 'a dangling or looping symbolic link'
  try:
    with Image.open(path) as im:
      width, height = im.size
      if im.format == 'JPEG':
        im.draft('RGB', (max(1, width // 8), max(1, height // 8)))
      im.load()
  except Exception as e:  # pylint: disable=broad-except  # Anything unreadable is skipped.
    return describe_error(e)
  width, height = _scaled_size(width, height, max_side)
  return height, width


def header_size(path: str) -> tuple[int, int] | str:
  """(height, width) from the file's header alone, or why it cannot be opened."""
  try:
    with Image.open(path) as im:
      return im.height, im.width
  except Exception as e:  # pylint: disable=broad-except  # Any unreadable file is skipped.
    return describe_error(e)
