"""Artifact sizes and single-image latency of every export format, next to JAX's.

Exports one generator (resnet_9blocks, ngf 64 with random parameters by default, or a
--workdir's) in each format with `cyclegan_jax.deploy.export`, reloads each in its own runtime
and times one [1, S, S, 3] image through it: the median of --repeats calls after
--warmup. JAX is timed as `cyclegan_jax.deploy.translate` runs it (the backend's default
compute forms; on CPU the `cpu_forms` rewrites) and as the plain float32 network that
every artifact computes. Prints a table and one JSON line.

  python benchmarks/export.py [--size 256] [--repeats 10] [--warmup 2]
      [--netG resnet_9blocks] [--ngf 64] [--workdir DIR --direction AtoB]
      [--formats stablehlo,saved_model,tflite,onnx]
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from typing import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import numpy as np

from configs import default as default_config
from cyclegan_jax.deploy import export
from cyclegan_jax.deploy import inference
from cyclegan_jax.methods import cycle_gan
from cyclegan_jax.nets import models
from cyclegan_jax.train import checkpoints


def random_workdir(netG: str, ngf: int, size: int) -> str:
  """A workdir holding step 0 with a randomly initialised G_A of this architecture."""
  config = default_config.get_config()
  config.model.netG, config.model.ngf, config.crop_size = netG, ngf, size
  generator = models.generator_from_config(config.model)
  params = jax.jit(generator.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))['params']
  workdir = tempfile.mkdtemp(prefix='export_bench_')
  manager = checkpoints.create_manager(workdir)
  checkpoints.save(manager, 0, params={'G_A': params}, config=config.to_dict())
  manager.wait_until_finished()
  manager.close()
  return workdir


def latency(
  run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, warmup: int, repeats: int
) -> tuple[float, float]:
  """(first call's seconds, median seconds of the timed calls)."""
  start = time.perf_counter()
  run(x)
  first = time.perf_counter() - start
  for _ in range(warmup - 1):
    run(x)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run(x)
    times.append(time.perf_counter() - start)
  return first, statistics.median(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--size', type=int, default=256, help='Image height and width.')
  parser.add_argument('--repeats', type=int, default=10, help='Timed calls (median).')
  parser.add_argument('--warmup', type=int, default=2, help='Untimed calls first (>= 1).')
  parser.add_argument('--netG', default='resnet_9blocks')
  parser.add_argument('--ngf', type=int, default=64)
  parser.add_argument('--workdir', default=None, help='Export this checkpoint instead.')
  parser.add_argument('--direction', default='AtoB')
  parser.add_argument('--formats', default=','.join(export.FORMATS))
  args = parser.parse_args()

  own_workdir = args.workdir is None
  workdir = (
    random_workdir(args.netG, args.ngf, args.size) if own_workdir else args.workdir
  )
  folder = tempfile.mkdtemp(prefix='export_bench_out_')
  x = (
    np.random.default_rng(0)
    .uniform(-1, 1, (1, args.size, args.size, 3))
    .astype(np.float32)
  )
  rows = []
  try:
    name = cycle_gan.DIRECTIONS[args.direction][0]
    restored = inference.restore(workdir, generators=(name,))
    params = restored.params[name]
    plain = export.plain_float32(restored.generator)
    for label, generator in [
      ('jax translate', restored.generator),
      ('jax plain float32', plain),
    ]:
      run = inference.generator_fn(generator)
      first, median = latency(
        lambda v, run=run: np.asarray(run(params, v)),
        x,
        max(1, args.warmup),
        args.repeats,
      )
      rows.append(
        {
          'runtime': label,
          'format': 'jax',
          'size_mb': None,
          'export_s': None,
          'first_call_s': first,
          'latency_s': median,
        }
      )
    reference = np.asarray(inference.generator_fn(plain)(params, x))

    for fmt in args.formats.split(','):
      path = os.path.join(folder, f'generator.{fmt}')
      start = time.perf_counter()
      size = (args.size, args.size) if fmt == 'tflite' else None
      export.export(export.Request(workdir, args.direction, fmt, path, size=size))
      export_s = time.perf_counter() - start
      run = export.load_artifact(fmt, path)
      first, median = latency(run, x, max(1, args.warmup), args.repeats)
      rows.append(
        {
          'runtime': {
            'stablehlo': 'jax.export (deserialize + call)',
            'saved_model': 'TensorFlow (tf.saved_model.load)',
            'tflite': 'LiteRT Interpreter (XNNPACK)',
            'onnx': 'onnxruntime (CPU EP)',
          }[fmt],
          'format': fmt,
          'size_mb': export.artifact_size(path) / 2**20,
          'export_s': export_s,
          'first_call_s': first,
          'latency_s': median,
          'max_abs_diff': float(np.abs(run(x) - reference).max()),
        }
      )
  finally:
    shutil.rmtree(folder, ignore_errors=True)
    if own_workdir:
      shutil.rmtree(workdir, ignore_errors=True)

  print(
    f'{restored.model_config.netG} ngf {restored.model_config.ngf}, one '
    f'{args.size}×{args.size} image, {platform.processor() or platform.machine()} '
    f'({os.cpu_count()} CPUs), median of {args.repeats}'
  )
  print(
    '| format | runtime | artifact MiB | export s | first call s | latency ms | '
    'max abs diff vs JAX |'
  )
  print('|---|---|---:|---:|---:|---:|---:|')
  for r in rows:
    size = '' if r['size_mb'] is None else f'{r["size_mb"]:.1f}'
    export_s = '' if r['export_s'] is None else f'{r["export_s"]:.1f}'
    diff = f'{r["max_abs_diff"]:.1e}' if 'max_abs_diff' in r else ''
    print(
      f'| {r["format"]} | {r["runtime"]} | {size} | {export_s} | '
      f'{r["first_call_s"]:.2f} | {r["latency_s"] * 1e3:.1f} | {diff} |'
    )
  print(
    json.dumps(
      {
        'benchmark': 'export',
        'netG': restored.model_config.netG,
        'ngf': restored.model_config.ngf,
        'size': args.size,
        'cpus': os.cpu_count(),
        'repeats': args.repeats,
        'rows': [
          {k: (float(f'{v:.4g}') if isinstance(v, float) else v) for k, v in r.items()}
          for r in rows
        ],
      }
    )
  )


if __name__ == '__main__':
  main()
