"""An aligned dataset folder as CycleGAN's unaligned domains, with the truth kept.

  python -m cyclegan_jax.data.pair_folders PATH [--json]

CycleGAN trains on PATH/trainA and PATH/trainB and scores a test image against
PATH/testA_gt/<its file name> (and testB_gt/) where those exist. A paired folder has
the truth but not these names:

* the official `prepare_cityscapes_dataset.py` writes testA/<i>_A.jpg and
  testB/<i>_B.jpg next to the side-by-side test/<i>.jpg;
* the official pix2pix downloads (facades, maps, cityscapes) hold only side-by-side
  train/, test/ (or val/) images, A the left half.

This writes what is missing: PHASEA/ and PHASEB/ cut from the side-by-side images (as
PNG, `<stem>.png`) where those folders do not exist, then testA_gt/ (each testA
file's partner B under the testA file's name) and testB_gt/ likewise. Partners are the
files of equal stem once a trailing `_A` / `_B` is dropped. Existing files are kept.
"""

from __future__ import annotations

import os
import shutil
from typing import Sequence

from absl import flags
import numpy as np
from PIL import Image

from cyclegan_jax.cli import app
from cyclegan_jax.data import image_files

FLAGS = flags.FLAGS


def _stem(path: str) -> str:
  stem = os.path.splitext(os.path.basename(path))[0]
  return stem[:-2] if stem.endswith(('_A', '_B')) else stem


def _side_by_side_dir(root: str, phase: str) -> str | None:
  for name in (phase,) if phase == 'train' else (phase, 'val'):
    if os.path.isdir(os.path.join(root, name)):
      return os.path.join(root, name)
  return None


def _split_halves(source: str, dir_a: str, dir_b: str) -> int:
  """Writes the halves of every side-by-side image of `source`; returns how many."""
  os.makedirs(dir_a, exist_ok=True)
  os.makedirs(dir_b, exist_ok=True)
  count = 0
  for path in image_files.list_images(source):
    both = image_files.read_rgb(path)
    half = both.shape[1] // 2
    stem = os.path.splitext(os.path.basename(path))[0]
    for directory, part in ((dir_a, both[:, :half]), (dir_b, both[:, half : 2 * half])):
      out = os.path.join(directory, f'{stem}.png')
      if not os.path.exists(out):
        Image.fromarray(np.ascontiguousarray(part)).save(out)
    count += 1
  return count


def _write_truth(dir_x: str, dir_y: str, gt_dir: str) -> int:
  """gt_dir/<x file name> = its partner in dir_y (copied, or converted to x's format)."""
  partners = {_stem(p): p for p in image_files.list_images(dir_y)}
  os.makedirs(gt_dir, exist_ok=True)
  count = 0
  for path in image_files.list_images(dir_x):
    partner = partners.get(_stem(path))
    if partner is None:
      continue
    out = os.path.join(gt_dir, os.path.basename(path))
    if not os.path.exists(out):
      if os.path.splitext(out)[1].lower() == os.path.splitext(partner)[1].lower():
        shutil.copyfile(partner, out)
      else:
        Image.fromarray(image_files.read_rgb(partner)).save(out)
    count += 1
  return count


def unaligned_with_truth(root: str) -> dict[str, int]:
  """Fills `root` with trainA/B, testA/B and testA_gt/, testB_gt/; returns counts."""
  if not os.path.isdir(root):
    raise ValueError(f'{root} is not a folder; give an aligned dataset folder.')
  counts: dict[str, int] = {}
  for phase in ('train', 'test'):
    dir_a, dir_b = (os.path.join(root, f'{phase}{d}') for d in 'AB')
    if not (os.path.isdir(dir_a) and os.path.isdir(dir_b)):
      source = _side_by_side_dir(root, phase)
      if source is None:
        raise ValueError(
          f'{root} has neither {phase}A/ with {phase}B/ nor side-by-side {phase}/ '
          'images; give a folder in the official aligned layout.'
        )
      counts[f'{phase}_split'] = _split_halves(source, dir_a, dir_b)
  test_a, test_b = os.path.join(root, 'testA'), os.path.join(root, 'testB')
  counts['testA_gt'] = _write_truth(test_a, test_b, os.path.join(root, 'testA_gt'))
  counts['testB_gt'] = _write_truth(test_b, test_a, os.path.join(root, 'testB_gt'))
  if not counts['testA_gt']:
    raise ValueError(
      f'No file of {test_a} has a partner of the same name in {test_b} (12_A.jpg with '
      '12_B.jpg, or 12.png with 12.png); the truth cannot be paired.'
    )
  return counts


def define_flags() -> None:
  """None of its own: the folder is the one argument."""


def main(argv: Sequence[str]) -> app.Outcome:
  if len(argv) != 2:
    raise app.UsageError('expected one argument: the aligned dataset folder')
  counts = unaligned_with_truth(os.path.expanduser(argv[1]))
  line = (
    f'{argv[1]}: testA_gt/ holds the truth of {counts["testA_gt"]} testA images and '
    f'testB_gt/ of {counts["testB_gt"]} testB images'
  )
  split = [f'{counts[k]} {k[:-6]}' for k in ('train_split', 'test_split') if k in counts]
  if split:
    line += f'; cut A|B halves of {" and ".join(split)} images'
  return app.Outcome(line + '.', {'command': 'pair_folders', 'root': argv[1], **counts})


def cli() -> None:
  """`python -m cyclegan_jax.data.pair_folders PATH`."""
  app.run(main, prog='pair_folders', define_flags=define_flags)


if __name__ == '__main__':
  cli()
