"""pix2pix against CycleGAN on one photo look with known truth: the paired upper bound.

  python benchmarks/upper_bound.py --workdir=/tmp/upper_bound --look=colour \
      --steps=2000 --seeds=0,1 >> benchmarks/results/cpu_upper_bound_DATE.jsonl

The CycleGAN paper measures unpaired training against pix2pix trained on the same
pairs (its Tables 1-3). Here the pairs are a photo look's (`studies/photo_looks.py
--paired`): B = look(A) of the same crop. Each model is trained as a user would, from
its demo config with only the data and the steps changed:

  cycle_gan  configs/demo.py on the unpaired look (train A and train B from other
             crops), random --cyclegan_crop crops (the demo's ResNet at CPU size);
             both directions from one run.
  pix2pix    configs/demo_pix2pix.py on the paired look (whole images), one run per
             direction.

Every model is scored on the same held-out test pairs (crops of photos no training
crop sees), both directions, by translating the whole test images with the translate
command (pix2pix in the official test mode: the test image's own batch statistics,
dropout on): PSNR / SSIM against the truth, and the input unchanged as the floor.
Prints one JSON line per (model, seed, direction) and one summary line per
(model, direction), mean and half-range over the seeds. Finished runs are kept in
--workdir and reused when the script runs again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cyclegan_jax.data import image_files  # noqa: E402
from cyclegan_jax.studies import photo_looks  # noqa: E402

DIRECTIONS = {'AtoB': ('testA', 'testB'), 'BtoA': ('testB', 'testA')}


def run(command: list[str]) -> float:
  """Runs `command` from the repository root; its seconds. Raises on failure."""
  start = time.perf_counter()
  done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  if done.returncode:
    raise RuntimeError(
      f'{" ".join(command[:4])} ... failed ({done.returncode}): '
      + (done.stderr.strip().splitlines() or ['no output'])[-1]
    )
  return time.perf_counter() - start


def train(workdir: str, config: str, overrides: dict[str, object]) -> float | None:
  """Trains one run into `workdir` unless it finished before (None then)."""
  marker = os.path.join(workdir, 'upper_bound_train_s.json')
  if os.path.exists(marker):
    return None
  seconds = run(
    [
      sys.executable,
      '-m',
      'cyclegan_jax.main',
      f'--config={config}',
      f'--workdir={workdir}',
      *(f'--config.{k}={v}' for k, v in overrides.items()),
    ]
  )
  with open(marker, 'w') as f:
    json.dump({'train_s': seconds}, f)
  return seconds


def load(folder: str) -> dict[str, np.ndarray]:
  """A folder's images by file stem, as float [H, W, 3] in [0, 1]."""
  return {
    os.path.splitext(os.path.basename(p))[0]: image_files.read_rgb(p).astype(np.float64)
    / 255.0
    for p in image_files.list_images(folder)
  }


def scores(outputs: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict:
  """Mean PSNR and SSIM of `outputs` against `truth`, matched by file stem."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.evaluation import metrics  # pylint: disable=g-import-not-at-top

  names = sorted(truth)
  missing = [n for n in names if n not in outputs]
  if missing:
    raise RuntimeError(f'no output for {len(missing)} test images ({missing[:3]}).')
  x = jnp.asarray(np.stack([outputs[n] for n in names]), jnp.float32)
  y = jnp.asarray(np.stack([truth[n] for n in names]), jnp.float32)
  return {
    'psnr': round(float(jnp.mean(metrics.psnr(x, y))), 3),
    'ssim': round(float(jnp.mean(metrics.ssim(x, y))), 4),
    'images': len(names),
  }


def translate(workdir: str, source: str, output: str, direction: str) -> None:
  run(
    [
      sys.executable,
      '-m',
      'cyclegan_jax.deploy.translate',
      f'--workdir={workdir}',
      f'--input={source}',
      f'--output={output}',
      f'--direction={direction}',
      '--batch_size=1',
      '--overwrite',
    ]
  )


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--look', default='colour', choices=sorted(photo_looks.LOOKS))
  parser.add_argument('--size', type=int, default=128, help='Photo crop side.')
  parser.add_argument('--steps', type=int, default=2000)
  parser.add_argument('--seeds', default='0,1')
  parser.add_argument('--cyclegan_crop', type=int, default=64)
  parser.add_argument(
    '--models', default='cycle_gan,pix2pix', help='Comma list: cycle_gan, pix2pix.'
  )
  args = parser.parse_args()
  seeds = [int(s) for s in args.seeds.split(',')]
  models = args.models.split(',')
  data = os.path.join(args.workdir, 'data')
  unpaired, paired = (
    photo_looks.write_dataset(data, args.look, size=args.size, paired=p)
    for p in (False, True)
  )
  truth = {split: load(os.path.join(paired, split)) for split in ('testA', 'testB')}
  rows = []

  def score(model: str, seed: int, direction: str, run_dir: str, train_s) -> None:
    source, target = DIRECTIONS[direction]
    out = os.path.join(run_dir, f'translated_{direction}')
    translate(run_dir, os.path.join(paired, source), out, direction)
    row = {
      'benchmark': 'upper_bound',
      'look': args.look,
      'size': args.size,
      'model': model,
      'seed': seed,
      'steps': args.steps,
      'direction': direction,
      **scores(load(out), truth[target]),
      'train_s': round(train_s, 1) if train_s else None,
    }
    rows.append(row)
    print(json.dumps(row), flush=True)

  for seed in seeds:
    if 'cycle_gan' in models:
      run_dir = os.path.join(args.workdir, f'cycle_gan_seed{seed}')
      train_s = train(
        run_dir,
        'configs/demo.py',
        {
          'dataset': f'folder:{unpaired}',
          'preprocess': 'crop',
          'crop_size': args.cyclegan_crop,
          'num_train_steps': args.steps,
          'seed': seed,
        },
      )
      for direction in DIRECTIONS:
        score('cycle_gan', seed, direction, run_dir, train_s)
    if 'pix2pix' in models:
      for direction in DIRECTIONS:
        run_dir = os.path.join(args.workdir, f'pix2pix_{direction}_seed{seed}')
        train_s = train(
          run_dir,
          'configs/demo_pix2pix.py',
          {
            'dataset': f'folder:{paired}',
            'dataset_mode': 'aligned',
            'direction': direction,
            'preprocess': 'crop',
            'crop_size': args.size,
            'num_train_steps': args.steps,
            'seed': seed,
          },
        )
        score('pix2pix', seed, direction, run_dir, train_s)
  for direction, (source, target) in DIRECTIONS.items():
    rows.append(
      {
        'benchmark': 'upper_bound',
        'look': args.look,
        'size': args.size,
        'model': 'input_unchanged',
        'direction': direction,
        **scores(truth[source], truth[target]),
      }
    )
    print(json.dumps(rows[-1]), flush=True)
  for model in ('cycle_gan', 'pix2pix'):
    for direction in DIRECTIONS:
      mine = [r for r in rows if r['model'] == model and r['direction'] == direction]
      if not mine:
        continue
      summary = {'benchmark': 'upper_bound_summary', 'look': args.look}
      summary.update(model=model, direction=direction, seeds=len(mine))
      for key in ('psnr', 'ssim'):
        values = [r[key] for r in mine]
        summary[key] = round(statistics.mean(values), 3)
        summary[f'{key}_half_range'] = round((max(values) - min(values)) / 2, 3)
      print(json.dumps(summary), flush=True)


if __name__ == '__main__':
  main()
