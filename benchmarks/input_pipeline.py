"""Throughput of the training input pipeline alone, in image pairs per second.

Writes a folder of 256×256 JPEGs per domain (horse2zebra's size; smooth random content so
they compress like photos), then runs `create_train_dataset` with the paper's preprocessing
(bicubic resize to 286, random 256 crop, flip) and reports:

* the first epoch: PIL decode + resize, filling the in-memory cache;
* later epochs: from the cache (random crop, flip, scaling, batching).

  python benchmarks/input_pipeline.py [--images 200] [--pairs 1000] [--batch_size 1]
  python benchmarks/input_pipeline.py --dataset cycle_gan/horse2zebra  # a real source
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import numpy as np  # pylint: disable=g-import-not-at-top
from PIL import Image

from configs import default
from cyclegan_jax.data import input_pipeline


def _write_jpegs(root: str, count: int) -> None:
  rng = np.random.default_rng(0)
  for split in ('trainA', 'trainB'):
    os.makedirs(os.path.join(root, split))
    for i in range(count):
      small = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
      image = np.asarray(small.resize((256, 256), Image.BICUBIC), dtype=np.int16)
      image = np.clip(image + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)
      Image.fromarray(image).save(os.path.join(root, split, f'{i:05d}.jpg'), quality=90)


def _pairs_per_second(iterator, pairs: int, batch: int) -> float:
  start = time.perf_counter()
  for _ in range(pairs // batch):
    next(iterator)
  return (pairs // batch) * batch / (time.perf_counter() - start)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dataset', default=None, help='Default: a generated JPEG folder.')
  parser.add_argument(
    '--images', type=int, default=200, help='Generated images per domain.'
  )
  parser.add_argument(
    '--pairs', type=int, default=1000, help='Pairs timed from the cache.'
  )
  parser.add_argument('--batch_size', type=int, default=1)
  parser.add_argument('--load_size', type=int, default=286)
  parser.add_argument('--crop_size', type=int, default=256)
  args = parser.parse_args()

  config = default.get_config()
  config.unlock()
  config.batch_size = args.batch_size
  config.load_size, config.crop_size = args.load_size, args.crop_size
  with tempfile.TemporaryDirectory() as tmp:
    if args.dataset is None:
      _write_jpegs(tmp, args.images)
      config.dataset = f'folder:{tmp}'
    else:
      config.dataset = args.dataset
    start = time.perf_counter()
    ds, info = input_pipeline.create_train_dataset(config)
    iterator = iter(ds.as_numpy_iterator())
    next(iterator)
    setup = time.perf_counter() - start
    # The rest of the first epoch decodes and resizes every image into the cache.
    first = _pairs_per_second(
      iterator, info.epoch_length - config.batch_size, config.batch_size
    )
    cached = _pairs_per_second(iterator, args.pairs, config.batch_size)
  print(
    f'dataset={config.dataset if args.dataset else "generated 256x256 JPEG folder"} '
    f'images/domain={info.num_a}/{info.num_b} load={config.load_size} '
    f'crop={config.crop_size} batch={config.batch_size} cpus={os.cpu_count()}'
  )
  print(f'setup + first batch: {setup:.2f} s (folders: validating every file)')
  print(f'first epoch (decode + bicubic resize + cache): {first:.1f} image pairs/s')
  print(f'cached epochs (crop + flip + scale + batch):   {cached:.1f} image pairs/s')


if __name__ == '__main__':
  main()
