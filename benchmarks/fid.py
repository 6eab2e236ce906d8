"""FID feature-extraction throughput, in images per second.

pytorch-fid's Inception (random parameters unless --inception_weights is given; speed does
not depend on them) on uint8 images of one size, as `python -m cyclegan_jax.evaluation.fid` and the
evaluation run it: the host resizes each image to 299×299 (bilinear, as pytorch-fid), the
device runs batches of --batch_size over all local devices. After a warm-up batch
(compile), each repeat times --images images end to end (features back on the host); the
median is reported, as a readable line and one JSON line, with the host resize alone.

  python benchmarks/fid.py [--images 100] [--size 256] [--batch_size 50] [--repeats 3]
      [--precision highest|default] [--inception_weights FILE]
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from cyclegan_jax.evaluation import inception  # pylint: disable=wrong-import-position


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--images', type=int, default=100, help='Images per timed repeat.')
  parser.add_argument('--size', type=int, default=256, help='Image height and width.')
  parser.add_argument('--batch_size', type=int, default=inception.BATCH_SIZE)
  parser.add_argument('--repeats', type=int, default=3, help='Timed repeats (median).')
  parser.add_argument(
    '--precision',
    default='highest',
    choices=['highest', 'default'],
    help='Matmul/conv precision (default: TF32 on recent NVIDIA GPUs).',
  )
  parser.add_argument('--inception_weights', default=None)
  args = parser.parse_args()

  if args.inception_weights:
    variables = inception.load_weights(args.inception_weights)
  else:
    x = jnp.zeros((1, inception.SIZE, inception.SIZE, 3), jnp.float32)
    variables = jax.jit(lambda k: inception.InceptionV3().init(k, x))(jax.random.key(0))
  precision = (
    jax.lax.Precision.HIGHEST
    if args.precision == 'highest'
    else jax.lax.Precision.DEFAULT
  )
  net = inception.InceptionNet(variables, batch_size=args.batch_size, precision=precision)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8)

  start = time.perf_counter()
  warm = inception.FeatureExtractor(net)
  for image in images[: net.batch_size]:
    warm.add(image)
  warm.features()
  warmup = time.perf_counter() - start

  start = time.perf_counter()
  for image in images:
    inception.resize_to_299(image)
  resize_rate = len(images) / (time.perf_counter() - start)

  rates = []
  for _ in range(args.repeats):
    start = time.perf_counter()
    extractor = inception.FeatureExtractor(net)
    for image in images:
      extractor.add(image)
    assert extractor.features().shape == (len(images), inception.FEATURES)
    rates.append(len(images) / (time.perf_counter() - start))

  device = jax.devices()[0]
  row = {
    'benchmark': 'fid_features',
    'backend': jax.default_backend(),
    'device': device.device_kind,
    'devices': len(jax.local_devices()),
    'cpu_count': os.cpu_count(),
    'images': args.images,
    'size': args.size,
    'batch_size': net.batch_size,
    'precision': args.precision,
    'warmup_s': round(warmup, 2),
    'images_per_s': round(statistics.median(rates), 2),
    'images_per_s_all': [round(r, 2) for r in rates],
    'host_resize_images_per_s': round(resize_rate, 1),
  }
  print(
    f'{row["images_per_s"]:.2f} images/s ({args.size}px → 299, '
    f'batch {net.batch_size}, '
    f'{row["devices"]} {row["backend"]} device(s), precision {args.precision}); host '
    f'resize alone {row["host_resize_images_per_s"]:.0f} images/s; warm-up '
    f'{row["warmup_s"]:.1f} s'
  )
  print(json.dumps(row))


if __name__ == '__main__':
  main()
