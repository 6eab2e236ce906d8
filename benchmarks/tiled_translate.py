"""Tiled vs untiled translation of one large image: seconds per megapixel and peak memory.

The demo's generator size (resnet_6blocks, ngf 16) with random parameters (speed and
memory do not depend on their values), float32, one synthetic image per case. Each case
runs in its own subprocess, so its peak host RSS (`ru_maxrss`) is its own. A case warms
up first (untiled: the same size; tiled: a 2×tile image, which compiles the same tile
functions), then times `--repeats` translations (the median), host image in, host image
out. Prints one JSON
line per case: seconds per megapixel, peak RSS, RSS after set-up (JAX and the
parameters), and for tiled cases the largest per-tile device bytes (the compiled tile
function's argument + output + temporary sizes) with the stage it belongs to.

  python benchmarks/tiled_translate.py [--sizes 1024,2048,4096] [--untiled_max 2048]
      [--tile 512] [--overlap 0] [--ngf 16] [--netG resnet_6blocks]
      [--conv_impl auto|xla|cpu|gpu] [--repeats 1]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

from cyclegan_jax.nets import spec  # noqa: E402  # Imports no JAX.


def _rss_mb() -> float:
  """This process's peak resident set so far, MB (ru_maxrss is KB on Linux)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _median_seconds(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def run_case(args: argparse.Namespace) -> dict:
  """One case in this process: warm up, time the translations, report."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  import numpy as np

  from cyclegan_jax.deploy import tiling
  from cyclegan_jax.nets import models

  generator = models.ResnetGenerator(
    ngf=args.ngf,
    num_blocks=spec.num_blocks_of(args.netG),
    conv_impl=spec.resolve_conv_impl(args.conv_impl, jax.default_backend()),
  )
  params = jax.jit(generator.init)(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))['params']
  rng = np.random.default_rng(0)
  size, tile = args.size, args.tile
  row = {'benchmark': 'tiled_translate', 'size': size, 'ngf': args.ngf}
  row.update(netG=args.netG, conv_impl=generator.conv_impl, backend=jax.default_backend())
  if tile:
    report = tiling.TileReport()
    warm = rng.uniform(-1, 1, (min(2 * tile, size), min(2 * tile, size), 3))
    tiling.translate_tiled(
      generator,
      params,
      warm.astype(np.float32),
      tile=tile,
      overlap=args.overlap,
      report=report,
    )
    setup_mb = _rss_mb()
    image = rng.uniform(-1, 1, (size, size, 3)).astype(np.float32)
    seconds = _median_seconds(
      lambda: tiling.translate_tiled(
        generator, params, image, tile=tile, overlap=args.overlap
      ),
      args.repeats,
    )
    stage = max(report.device_bytes, key=report.device_bytes.get)
    row.update(
      tile=tile,
      overlap=args.overlap,
      tile_device_mb_max=round(report.device_bytes[stage] / 2**20, 3),
      tile_device_stage=stage,
    )
  else:
    run = jax.jit(lambda p, x: generator.apply({'params': p}, x))
    image = rng.uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    np.asarray(run(params, image))
    setup_mb = _rss_mb()  # Includes the first run: the peak is the same program's.
    seconds = _median_seconds(lambda: np.asarray(run(params, image)), args.repeats)
    analysis = run.lower(params, image).compile().memory_analysis()
    if analysis is not None:
      row['untiled_device_mb'] = round(
        (
          analysis.argument_size_in_bytes
          + analysis.output_size_in_bytes
          + analysis.temp_size_in_bytes
        )
        / 2**20,
        1,
      )
    row['tile'] = 0
  megapixels = size * size / 1e6
  row.update(
    seconds=round(seconds, 2),
    s_per_megapixel=round(seconds / megapixels, 3),
    peak_rss_mb=round(_rss_mb()),
    setup_rss_mb=round(setup_mb),
  )
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--sizes', default='1024,2048,4096', help='Image sides, px.')
  parser.add_argument(
    '--untiled_max', type=int, default=2048, help='Largest side also run untiled.'
  )
  parser.add_argument('--tile', type=int, default=512)
  parser.add_argument('--overlap', type=int, default=0)
  parser.add_argument('--ngf', type=int, default=16)
  parser.add_argument('--netG', default='resnet_6blocks')
  parser.add_argument('--conv_impl', default='auto', choices=spec.CONV_IMPLS)
  parser.add_argument('--repeats', type=int, default=1, help='Timed runs (median).')
  parser.add_argument('--size', type=int, help=argparse.SUPPRESS)  # One case (child).
  args = parser.parse_args()
  if args.size is not None:
    print(json.dumps(run_case(args)), flush=True)
    return
  common = [
    f'--ngf={args.ngf}',
    f'--netG={args.netG}',
    f'--conv_impl={args.conv_impl}',
    f'--overlap={args.overlap}',
    f'--repeats={args.repeats}',
  ]
  for size in (int(s) for s in args.sizes.split(',')):
    tiles = ([0] if size <= args.untiled_max else []) + [args.tile]
    for tile in tiles:
      result = subprocess.run(
        [sys.executable, __file__, f'--size={size}', f'--tile={tile}', *common],
        capture_output=True,
        text=True,
        check=False,
      )
      line = next((x for x in result.stdout.splitlines() if x.startswith('{')), None)
      if result.returncode or line is None:
        print(
          json.dumps(
            {
              'benchmark': 'tiled_translate',
              'size': size,
              'tile': tile,
              'error': result.stderr.strip().splitlines()[-1:],
            }
          ),
          flush=True,
        )
      else:
        print(line, flush=True)


if __name__ == '__main__':
  main()
