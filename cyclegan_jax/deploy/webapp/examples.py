"""The test images the page offers to pick, per direction: a folder, or the checkpoint's
own test split where it can be read without a download (folders, synthetic tasks).

Each example is served as the bytes translate would read from disk (a folder's files as
they are, rendered images as PNG), so picking one gives translate's output for that file.
"""

from __future__ import annotations

import dataclasses
import io
import mimetypes
import os
from typing import Any, Mapping

from absl import logging
import numpy as np

from cyclegan_jax.data import image_files
from cyclegan_jax.data import synthetic
from cyclegan_jax.deploy import inference

MAX_EXAMPLES = 8  # Per direction: a short list to pick from, not a dataset browser.


@dataclasses.dataclass(frozen=True)
class Example:
  """One image to pick: its file name, its bytes and their media type."""

  name: str
  data: bytes
  media_type: str


def png_example(name: str, image: np.ndarray) -> Example:
  """A uint8 [H, W, 1 | 3] image as a PNG example."""
  buffer = io.BytesIO()
  inference.to_pil(np.asarray(image)).save(buffer, format='PNG')
  return Example(f'{name}.png', buffer.getvalue(), 'image/png')


def file_example(path: str) -> Example:
  """An image file as it is on disk."""
  with open(path, 'rb') as f:
    data = f.read()
  media_type = mimetypes.guess_type(path)[0] or 'application/octet-stream'
  return Example(os.path.basename(path), data, media_type)


def from_folder(folder: str, limit: int = MAX_EXAMPLES) -> list[Example]:
  """The first `limit` image files of `folder` (sorted by name)."""
  if not os.path.isdir(folder):
    raise ValueError(f'--examples {folder} is not a folder; give a folder of images.')
  return [file_example(p) for p in image_files.list_images(folder)[:limit]]


def _synthetic(
  task: str, domain: str, aligned: bool, size: int, limit: int
) -> list[Example]:
  """The first test images of a synthetic task's domain, as training rendered them."""
  if aligned:  # pix2pix pairs: the test scenes of testA drawn in both domains.
    images = synthetic.load_pairs(task, 'test', size)['AB'.index(domain)]
    names = synthetic.pair_names(task, 'test')
  else:
    images = synthetic.load_split(task, f'test{domain}', size)[0]
    names = synthetic.names(task, f'test{domain}')
  return [png_example(n, im) for n, im in zip(names[:limit], images[:limit])]


def _folder_split(
  root: str, domain: str, aligned: bool, max_side: int, limit: int
) -> list[Example]:
  """The first test images of domain `domain` in a dataset folder (either layout)."""
  if not aligned:
    folder = os.path.join(root, f'test{domain}')
    return from_folder(folder, limit) if os.path.isdir(folder) else []
  # Imported here: the paired loader brings TensorFlow, which nothing else here needs.
  from cyclegan_jax.data import paired  # pylint: disable=g-import-not-at-top

  dirs = paired.phase_dirs(root, 'test')
  if len(dirs) == 2:  # testA/ and testB/ of equal names.
    return from_folder(dirs['AB'.index(domain)], limit)
  examples = []  # Side-by-side A|B files: the half of the domain, as training splits it.
  for path in image_files.list_images(dirs[0])[:limit]:
    halves = paired._read_pair(path, '', max_side)  # pylint: disable=protected-access
    stem = os.path.splitext(os.path.basename(path))[0]
    examples.append(png_example(f'{stem}_{domain}', halves['AB'.index(domain)]))
  return examples


def for_domain(
  config: Mapping[str, Any], domain: str, limit: int = MAX_EXAMPLES
) -> list[Example]:
  """Test images of `domain` ('A' or 'B') from a checkpoint's saved config's dataset.

  Empty (one log line says why) where the dataset cannot be read here: a TFDS set (it
  may need a download) or a folder that is not on this machine.
  """
  dataset = str(config.get('dataset', ''))
  aligned = config.get('dataset_mode', 'unaligned') == 'aligned'
  try:
    if dataset.startswith('synthetic:'):
      size = int(config.get('load_size', 256))
      return _synthetic(dataset.split(':', 1)[1], domain, aligned, size, limit)
    if dataset.startswith('folder:'):
      max_side = int(config.get('max_image_side', 0) or 0) or None
      return _folder_split(dataset.split(':', 1)[1], domain, aligned, max_side, limit)
  except (OSError, ValueError) as e:
    logging.info('No test images from %s: %s', dataset, e)
    return []
  logging.info(
    'No test images to pick: the checkpoint was trained on %s; pass --examples=FOLDER '
    'to offer some.',
    dataset or 'an unknown dataset',
  )
  return []
