"""Which colour each `shapes` translation gives each input colour, and what that does to PSNR.

  python benchmarks/shapes_palette.py --runs=WORKDIR/paper/seed_0,WORKDIR/paper/seed_1

`synthetic:shapes` draws every object's colour index uniformly and paints it from one
palette per domain, so unpaired images do not say which of B's three colours goes with
which of A's: all 6 pairings match both domains' distributions equally. A translation
learns one of them, and PSNR/SSIM against the ground truth reward the one a seed
happened to find. (`synthetic:shapes_ranked` draws the colours 60 / 30 / 10 %, which
does pair them; the same palettes, so this reads its runs too.) For each run (a
training workdir with a scored `eval/step_N`, or `eval/val_step_N` with --split=val)
and direction this prints one JSON line: per input palette colour, the output palette
colour most of its pixels get, that colour's share of them, whether it is the truth's
pairing, and the run's PSNR and SSIM for that direction.
"""

from __future__ import annotations

import glob
import json
import os
import sys

from absl import app
from absl import flags
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

# pylint: disable=g-import-not-at-top
from cyclegan_jax.data import image_files  # noqa: E402
from cyclegan_jax.data import synthetic  # noqa: E402
from cyclegan_jax.evaluation import eval_dirs  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags, defined only when it runs, so that importing this module
  beside another benchmark with a `--split` (the tests do) cannot clash."""
  flags.DEFINE_list(
    'runs', None, 'Training workdirs of `synthetic:shapes` or `shapes_ranked` runs.'
  )
  flags.DEFINE_integer('step', None, 'The scored step (default: the last under eval/).')
  flags.DEFINE_enum(
    'split', 'test', ('test', 'val'), 'The scored split whose images to read.'
  )


# Pixels of the input within this distance (RGB in [0, 1]) of a palette colour are that
# colour's; anti-aliased edges fall outside it.
MATCH = 0.08
PALETTES = {'A': synthetic._PALETTE_A, 'B': synthetic._PALETTE_B}  # pylint: disable=protected-access
# What else a translation paints: the target's background and the stripes' light colour.
OTHERS = {
  'A': [synthetic._BACKGROUND_A],  # pylint: disable=protected-access
  'B': [synthetic._BACKGROUND_B, synthetic._STRIPE_LIGHT],  # pylint: disable=protected-access
}
NAMES = {
  'A': ('red', 'green', 'blue'),
  'B': ('yellow', 'magenta', 'orange'),
}


def pairing(
  pairs: list[tuple[np.ndarray, np.ndarray]], source: str, target: str
) -> list[tuple[int, float]]:
  """Per source palette colour: (target palette index most of its pixels become, its
  share among the pixels that become a palette colour), over (input, output) pairs."""
  colours = np.concatenate([PALETTES[target], *[[c] for c in OTHERS[target]]])
  counts = np.zeros((len(PALETTES[source]), len(PALETTES[target])))
  for real, out in pairs:
    near = np.linalg.norm(real[..., None, :] - PALETTES[source], axis=-1) < MATCH
    nearest = np.argmin(np.linalg.norm(out[..., None, :] - colours, axis=-1), axis=-1)
    for k in range(len(PALETTES[source])):
      got = nearest[near[..., k]]
      counts[k] += np.bincount(
        got[got < len(PALETTES[target])], minlength=counts.shape[1]
      )
  best = counts.argmax(axis=1)
  share = counts.max(axis=1) / np.maximum(counts.sum(axis=1), 1)
  return [(int(b), float(s)) for b, s in zip(best, share)]


def run_lines(workdir: str, step: int | None, split: str = 'test') -> list[dict]:
  """One line per direction of one run: its pairing against the truth's, and scores
  (`split`: which evaluation's images, `eval/step_N` or `eval/val_step_N`)."""
  steps = eval_dirs.scored_steps(workdir, split)
  if not steps:
    raise app.UsageError(
      f'No evaluation of the {split} split in {workdir}/eval; score the run first.'
    )
  step = steps[-1] if step is None else step
  folder = eval_dirs.path(workdir, step, split)
  with open(os.path.join(folder, 'metrics.json'), encoding='utf-8') as f:
    scored = json.load(f)
  lines = []
  for direction, (source, target) in (('AtoB', ('A', 'B')), ('BtoA', ('B', 'A'))):
    stems = sorted(glob.glob(os.path.join(folder, 'images', direction, '*_real.png')))
    real = [image_files.read_float(p) for p in stems]
    fake = [image_files.read_float(p.replace('_real.png', '_fake.png')) for p in stems]
    truth = [image_files.read_float(p.replace('_real.png', '_gt.png')) for p in stems]
    learned = pairing(list(zip(real, fake)), source, target)
    true = pairing(list(zip(real, truth)), source, target)
    lines.append(
      {
        'kind': 'shapes_palette',
        'command': ' '.join(['python', *sys.argv]),
        'workdir': workdir,
        'step': step,
        'split': scored['split'],
        'direction': direction,
        'pairing': {
          NAMES[source][k]: {
            'learned': NAMES[target][b],
            'share': round(s, 3),
            'truth': NAMES[target][t],
          }
          for k, ((b, s), (t, _)) in enumerate(zip(learned, true))
        },
        'right': sum(b == t for (b, _), (t, _) in zip(learned, true)),
        'psnr': scored['metrics'][f'{direction}/psnr'],
        'ssim': scored['metrics'][f'{direction}/ssim'],
      }
    )
  return lines


def main(argv: list[str]) -> None:
  del argv
  if not FLAGS.runs:
    raise app.UsageError('Pass --runs=WORKDIR[,WORKDIR...] (shapes training workdirs).')
  for workdir in FLAGS.runs:
    for line in run_lines(workdir, FLAGS.step, FLAGS.split):
      print(json.dumps(line))


if __name__ == '__main__':
  define_flags()
  app.run(main)
