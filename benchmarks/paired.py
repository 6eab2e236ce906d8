"""This repo's train step against the PyTorch reference iteration, step by step, in turns.

This shared 2-core VM's speed moves by 2× over hours and by ±20 % over minutes, so even
back-to-back runs of the two benchmarks disagree from one pair to the next. This script
starts both (`benchmarks/train_step.py --serve` and `benchmarks/torch_reference.py
--serve`), lets each compile and warm up, and then has them run one step at a time in
turns (A B, then B A, ...), so that whatever load the machine has hits both alike. It
prints the medians, the 10th–90th percentiles and the median of the per-round ratios
(reference / JAX; > 1 means JAX is faster), as one JSON line.

  python benchmarks/paired.py --torch_python=/tmp/torchvenv/bin/python --crop_size=128
  python benchmarks/paired.py --torch_python=... --crop_size=256 --rounds=6 --dtype=bfloat16

torch is not a dependency: see benchmarks/torch_reference.py for installing it on the side.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def serve_steps(one_step: Callable[[], None]) -> None:
  """The workers' side (`--serve`): 'ready', then one timed step per 'step' line on stdin.

  Standard library only: the reference imports it from its own (torch) environment.
  """
  print('ready', flush=True)
  for line in sys.stdin:
    if line.strip() != 'step':
      break
    t = time.perf_counter()
    one_step()
    print(time.perf_counter() - t, flush=True)


def start(command: list[str]) -> subprocess.Popen:
  """Starts a `--serve` worker and waits until it has compiled and warmed up."""
  proc = subprocess.Popen(
    command,
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
    bufsize=1,
  )
  for line in proc.stdout:
    if line.strip() == 'ready':
      return proc
  raise RuntimeError(
    f'{command[:2]} exited before it was ready (exit code '
    f'{proc.wait()}); run it without --serve to see its error.'
  )


def one_step(proc: subprocess.Popen) -> float:
  time.sleep(0.2)  # Let the other worker's threads stop spinning before timing this one.
  proc.stdin.write('step\n')
  line = proc.stdout.readline()
  if not line:
    raise RuntimeError('a worker exited in the middle of the run.')
  return float(line)


def percentiles(times: list[float]) -> tuple[float, float]:
  ordered = sorted(times)
  k = len(ordered) // 10
  return ordered[k], ordered[-1 - k]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument(
    '--torch_python',
    required=True,
    help="A Python with torch installed (not this project's venv).",
  )
  parser.add_argument('--crop_size', type=int, default=128)
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--rounds', type=int, default=15, help='Steps of each, in turns.')
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--jax_args', default='', help='More flags for train_step.py.')
  parser.add_argument('--torch_args', default='', help='More flags for the reference.')
  parser.add_argument(
    '--reference',
    default=os.path.join(HERE, 'torch_reference.py'),
    help='The reference script (it must speak the --serve protocol).',
  )
  args = parser.parse_args()
  common = [
    f'--crop_size={args.crop_size}',
    f'--dtype={args.dtype}',
    f'--warmup={args.warmup}',
    '--serve',
  ]
  workers = {
    'jax': start(
      [
        sys.executable,
        os.path.join(HERE, 'train_step.py'),
        *common,
        *shlex.split(args.jax_args),
      ]
    ),
    'pytorch': start(
      [args.torch_python, args.reference, *common, *shlex.split(args.torch_args)]
    ),
  }
  times = {name: [] for name in workers}
  try:
    for r in range(args.rounds):
      order = list(workers) if r % 2 == 0 else list(workers)[::-1]
      for name in order:
        times[name].append(one_step(workers[name]))
  finally:
    for proc in workers.values():
      proc.stdin.close()
      proc.wait()
  ratios = [t / j for j, t in zip(times['jax'], times['pytorch'])]
  row = {'crop_size': args.crop_size, 'dtype': args.dtype, 'rounds': args.rounds}
  for name, ts in times.items():
    low, high = percentiles(ts)
    row[f'{name}_s_median'] = round(statistics.median(ts), 4)
    row[f'{name}_s_p10_p90'] = [round(low, 4), round(high, 4)]
  low, high = percentiles(ratios)
  row['speedup_median'] = round(statistics.median(ratios), 3)
  row['speedup_p10_p90'] = [round(low, 3), round(high, 3)]
  print(json.dumps(row))


if __name__ == '__main__':
  main()
