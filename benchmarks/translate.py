"""Translation throughput of the generator, in images per second (forward pass only).

The paper's generator (resnet_9blocks, ngf 64) with random parameters, float32, batches
of 8 images of 256×256, as `cyclegan_jax.deploy.translate` runs them (one jitted program per
image size). After a warm-up (compile + one run), each repeat times `--batches` batches
end to end (host batch in, device result back on the host); the median is reported, as a
readable line and one JSON line.

  python benchmarks/translate.py [--size 256] [--batch_size 8] [--repeats 5] [--batches 2]
      [--netG resnet_9blocks] [--ngf 64] [--dtype float32] [--conv_impl auto|xla|cpu|gpu]
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import jax  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp
import ml_collections
import numpy as np

from cyclegan_jax.nets import models
from cyclegan_jax.nets import spec


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--size', type=int, default=256, help='Image height and width.')
  parser.add_argument('--batch_size', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=5, help='Timed repeats (median).')
  parser.add_argument('--batches', type=int, default=2, help='Batches per repeat.')
  parser.add_argument('--netG', default='resnet_9blocks')
  parser.add_argument('--ngf', type=int, default=64)
  parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
  parser.add_argument(
    '--conv_impl',
    default='auto',
    choices=spec.CONV_IMPLS,
    help='model.conv_impl (auto: the forms of this backend; nets/spec.py).',
  )
  args = parser.parse_args()

  model_config = ml_collections.ConfigDict(
    {'netG': args.netG, 'ngf': args.ngf, 'dtype': args.dtype, 'conv_impl': args.conv_impl}
  )
  generator = models.generator_from_config(model_config)
  shape = (args.batch_size, args.size, args.size, 3)
  params = jax.jit(generator.init)(jax.random.key(0), jnp.zeros((1, *shape[1:])))[
    'params'
  ]
  run = jax.jit(lambda p, x: generator.apply({'params': p}, x))
  images = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)

  start = time.perf_counter()
  np.asarray(run(params, images))  # Compile and one run.
  warmup = time.perf_counter() - start

  rates = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    for _ in range(args.batches):
      np.asarray(run(params, images))
    rates.append(args.batches * args.batch_size / (time.perf_counter() - start))

  device = jax.devices()[0]
  print(
    f'{args.netG} ngf {args.ngf} {args.dtype}, {args.size}×{args.size}, batch '
    f'{args.batch_size}, conv_impl={generator.conv_impl} on {device.platform} '
    f'({device.device_kind}, {os.cpu_count()} host CPUs): warm-up {warmup:.1f} s'
  )
  print(
    f'translate: {statistics.median(rates):.2f} images/s (median of {args.repeats}; '
    f'min {min(rates):.2f}, max {max(rates):.2f})'
  )
  print(
    json.dumps(
      {
        'benchmark': 'translate',
        'device': device.device_kind,
        'platform': device.platform,
        'netG': args.netG,
        'ngf': args.ngf,
        'dtype': args.dtype,
        'size': args.size,
        'batch_size': args.batch_size,
        'conv_impl': generator.conv_impl,
        'warmup_s': round(warmup, 2),
        'images_per_s_median': round(statistics.median(rates), 2),
        'images_per_s_min': round(min(rates), 2),
        'images_per_s_max': round(max(rates), 2),
      }
    )
  )


if __name__ == '__main__':
  main()
