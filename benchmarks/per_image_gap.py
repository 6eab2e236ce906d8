"""Where one row beats another, image by image: the PSNR gap against the inputs' light.

  python benchmarks/per_image_gap.py --a=WORKDIR/paper --b=WORKDIR/colour_skip+ema \
      --seeds=0,1,2 [--split=val]

A study's table gives each row's mean PSNR over a split. This reads the scored images
of two rows (`WORKDIR/<row>/seed_<s>/eval/step_N` for test, `val_step_N` for
validation), averages each image's PSNR over the seeds, and prints one JSON line per
direction: the mean gap (b − a, dB), the share of images where b is worse, the gap on
the darker and on the brighter half of the inputs (by mean luma), its correlation with
the inputs' luma and saturation, and those inputs' means. A gap carried by a few
images, or one that flips with the light of the photos, shows up here and not in the
table.
"""

from __future__ import annotations

import glob
import json
import os
import sys

from absl import app
from absl import flags
import numpy as np

sys.path[:0] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]

# pylint: disable=g-import-not-at-top
from cyclegan_jax.data import channels  # noqa: E402
from cyclegan_jax.data import image_files  # noqa: E402
from cyclegan_jax.evaluation import eval_dirs  # noqa: E402
from cyclegan_jax.evaluation import metrics  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('a', None, 'The baseline row folder (WORKDIR/<row>).')
flags.DEFINE_string('b', None, 'The row compared with it.')
flags.DEFINE_list('seeds', ['0'], 'Seeds to average each image over.')
flags.DEFINE_enum('split', 'test', ['test', 'val'], 'The scored split to read.')

DIRECTIONS = ('AtoB', 'BtoA')


def psnr(x: np.ndarray, y: np.ndarray) -> float:
  """PSNR (dB) of two images in [0, 1], as evaluation computes it."""
  return float(metrics.psnr(x[None], y[None])[0])


def eval_folder(run: str, split: str) -> str:
  """The last scored step's folder of one run for `split`."""
  try:
    return eval_dirs.latest(run, split)
  except FileNotFoundError as e:
    raise app.UsageError(str(e)) from None


def image_psnrs(run: str, split: str, direction: str) -> dict[str, float]:
  """{image stem: PSNR of the translation against the truth} of one run."""
  folder = os.path.join(eval_folder(run, split), 'images', direction)
  reals = sorted(glob.glob(os.path.join(folder, '*_real.png')))
  if not reals:
    raise app.UsageError(f'No scored images in {folder}.')
  return {
    os.path.basename(p)[: -len('_real.png')]: psnr(
      image_files.read_float(p.replace('_real.png', '_fake.png')),
      image_files.read_float(p.replace('_real.png', '_gt.png')),
    )
    for p in reals
  }


def mean_over_seeds(row: str, seeds: list[int], split: str, direction: str) -> dict:
  runs = [image_psnrs(os.path.join(row, f'seed_{s}'), split, direction) for s in seeds]
  stems = sorted(set.intersection(*(set(r) for r in runs)))
  return {k: float(np.mean([r[k] for r in runs])) for k in stems}


def light(path: str) -> tuple[float, float]:
  """(mean luma, mean saturation as max − min channel) of an image."""
  x = image_files.read_float(path)
  return float(np.mean(x @ channels.LUMA)), float(np.mean(x.max(-1) - x.min(-1)))


def gap_line(
  a: dict[str, float], b: dict[str, float], lights: dict[str, tuple[float, float]]
) -> dict:
  """The gap b − a over the images both rows scored, and how it follows the light."""
  stems = sorted(set(a) & set(b))
  gap = np.array([b[k] - a[k] for k in stems])
  luma = np.array([lights[k][0] for k in stems])
  sat = np.array([lights[k][1] for k in stems])
  darker = luma <= np.median(luma)

  def corr(x: np.ndarray) -> float | None:
    if np.std(x) == 0 or np.std(gap) == 0:
      return None
    return round(float(np.corrcoef(gap, x)[0, 1]), 3)

  return {
    'images': len(stems),
    'gap_db': round(float(gap.mean()), 3),
    'b_worse_share': round(float(np.mean(gap < 0)), 3),
    'gap_darker_half_db': round(float(gap[darker].mean()), 3),
    'gap_brighter_half_db': round(float(gap[~darker].mean()), 3)
    if (~darker).any()
    else None,
    'corr_luma': corr(luma),
    'corr_saturation': corr(sat),
    'input_luma': round(float(luma.mean()), 3),
    'input_saturation': round(float(sat.mean()), 3),
  }


def lines(a_row: str, b_row: str, seeds: list[int], split: str) -> list[dict]:
  out = []
  for direction in DIRECTIONS:
    a = mean_over_seeds(a_row, seeds, split, direction)
    b = mean_over_seeds(b_row, seeds, split, direction)
    folder = eval_folder(os.path.join(a_row, f'seed_{seeds[0]}'), split)
    lights = {
      k: light(os.path.join(folder, 'images', direction, f'{k}_real.png')) for k in a
    }
    out.append(
      {
        'kind': 'per_image_gap',
        'command': ' '.join(['python', *sys.argv]),
        'a': a_row,
        'b': b_row,
        'seeds': seeds,
        'split': split,
        'direction': direction,
        **gap_line(a, b, lights),
      }
    )
  return out


def main(argv: list[str]) -> None:
  del argv
  if not FLAGS.a or not FLAGS.b:
    raise app.UsageError('Pass --a=WORKDIR/<row> and --b=WORKDIR/<row>.')
  for line in lines(FLAGS.a, FLAGS.b, [int(s) for s in FLAGS.seeds], FLAGS.split):
    print(json.dumps(line))


if __name__ == '__main__':
  app.run(main)
