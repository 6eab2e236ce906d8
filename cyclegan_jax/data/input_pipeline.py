"""tf.data input pipeline: TFDS `cycle_gan/*`, image folders and built-in synthetic domains.

`config.dataset` picks the source:

* a TFDS name such as `cycle_gan/horse2zebra` (splits trainA/trainB/testA/testB; honours
  `config.data_dir`; prepared on first use);
* `folder:PATH` with the official repo's layout PATH/{trainA,trainB,testA,testB}/ holding
  jpg/jpeg/png/bmp/webp files, and optionally testA_gt/ and testB_gt/ with the true
  translation of each test image under the same file name;
* `synthetic:NAME` (see `synthetic.py`), rendered in memory at `config.load_size`.

With `config.dataset_mode='aligned'` (pix2pix) the sources are read as pairs instead, by
`paired.py` (side-by-side A|B images, two folders of equal file names, or synthetic
scenes drawn in both domains); the datasets below keep their structure.

Training preprocessing follows the official `data/base_dataset.py:get_transform`: a
deterministic resize (cached as uint8 when it fits in memory), then a random crop, a random
horizontal flip and scaling to [-1, 1]. A and B are shuffled independently and repeated
forever; the augmentation uses stateless random ops seeded by (config.seed, process,
domain, element index), so the stream is a pure function of the config. Every process reads
a disjoint part of each domain and batches `batch_size // process_count` pairs.

Folder images are decoded with PIL on the host, which turns grayscale, RGBA, palette and
16-bit files into 8-bit RGB; every file is validated once up front (in threads) and each
unreadable one is skipped and named in the log, so bad data never stops training midway.

Each domain has the channels its config field gives (`model.input_nc` for A,
`model.output_nc` for B; see `channels.py`): a 1-channel domain gets the luma of colour
images (PIL's `convert('L')`, as the official code; logged once per folder) and gray
files unchanged; a 3-channel domain gets gray files as gray RGB.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
from typing import Any, Callable

from absl import logging
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.data import image_files
from cyclegan_jax.data import synthetic

# TF must not grab accelerator memory that JAX needs; it only feeds the host.
try:
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # TF's devices were already initialised by someone else.
  pass

PREPROCESS_MODES = ('resize_and_crop', 'crop', 'scale_width_and_crop', 'none')
_MANUAL_URL = 'https://efrosgans.eecs.berkeley.edu/cyclegan/datasets/{name}.zip'


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Sizes of a source, over all processes.

  Attributes:
    num_a: images in domain A's train split.
    num_b: images in domain B's train split.
    epoch_length: image pairs per epoch, max(num_a, num_b) as in the reference.
    has_ground_truth: both test splits carry the true translation of each image.

  With dataset_mode='aligned', num_a = num_b = epoch_length = the train pairs.
  """

  num_a: int
  num_b: int
  epoch_length: int
  has_ground_truth: bool


# ----------------------------------------------------------------------------------
# Sources.


@dataclasses.dataclass(frozen=True)
class _Source:
  kind: str  # 'tfds' | 'folder' | 'synthetic'.
  name: str  # TFDS name, folder path or synthetic task.


def _parse_source(dataset: str) -> _Source:
  if dataset.startswith('folder:'):
    return _Source('folder', os.path.expanduser(dataset[len('folder:') :]))
  if dataset.startswith('synthetic:'):
    name = dataset[len('synthetic:') :]
    synthetic.check_task(name)
    return _Source('synthetic', name)
  return _Source('tfds', dataset)


def _process_slice(n: int, process_index: int, process_count: int) -> slice:
  """Contiguous part `process_index` of n items, as `tfds.even_splits` cuts it."""
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} is not in [0, {process_count}).')
  per, extra = divmod(n, process_count)
  start = per * process_index + min(process_index, extra)
  return slice(start, start + per + (1 if process_index < extra else 0))


# --- TFDS -----------------------------------------------------------------------------


def _cycle_gan_configs() -> list[str]:
  return [c.name for c in tfds.builder_cls('cycle_gan').BUILDER_CONFIGS]


@functools.lru_cache(maxsize=8)
def _tfds_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The prepared builder, or a clear error saying how to get the data."""
  valid = ', '.join(f'cycle_gan/{c}' for c in _cycle_gan_configs())
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except (ValueError, tfds.core.registered.DatasetNotFoundError):
    raise ValueError(
      f'Unknown dataset {name!r}. Valid TFDS datasets: {valid}; or '
      f"'folder:PATH' or 'synthetic:NAME' ({', '.join(synthetic.TASKS)})."
    ) from None
  if not builder.is_prepared():
    try:
      builder.download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except  # Any failure gets the how-to.
      short = name.split('/')[-1]
      manual = os.path.join(builder.data_dir_root, 'downloads', 'manual')
      raise RuntimeError(
        f'Could not download and prepare TFDS dataset {name!r} into '
        f'{builder.data_dir_root} ({type(e).__name__}: {e}). Without network access, '
        f'download {_MANUAL_URL.format(name=short)} elsewhere and place the zip in '
        f'{manual}/ (then run again), or unzip it and use '
        f'--config.dataset=folder:/path/to/{short}.'
      ) from e
  for split in ('trainA', 'trainB', 'testA', 'testB'):
    if builder.info.splits and split not in builder.info.splits:
      raise ValueError(f'TFDS dataset {name!r} has no split {split!r}; valid: {valid}.')
  return builder


def _tfds_count(builder: tfds.core.DatasetBuilder, split: str) -> int:
  if builder.info.splits:
    return builder.info.splits[split].num_examples
  # Mocked builders (tests) know no split sizes; their datasets know their cardinality.
  return int(builder.as_dataset(split=split).cardinality())


def _tfds_split(
  builder: tfds.core.DatasetBuilder,
  split: str,
  *,
  process_index: int,
  process_count: int,
  max_images: int = -1,
  channels: int = 3,
) -> tf.data.Dataset:
  """{'image': uint8 [H, W, channels], 'name': string} of this process's part, in order."""
  spec = split if max_images < 0 else f'{split}[:{max_images}]'
  sub = tfds.split_for_jax_process(
    spec, process_index=process_index, process_count=process_count
  )
  ds = builder.as_dataset(
    split=sub, shuffle_files=False, read_config=tfds.ReadConfig(add_tfds_id=True)
  )

  def convert(example):
    # 'cycle_gan-testA.tfrecord-00000-of-00001__12' -> a stem without dots or slashes.
    name = tf.strings.regex_replace(example['tfds_id'], r'[^A-Za-z0-9_-]', '_')
    return {'image': match_channels(example['image'], channels), 'name': name}

  if channels == 1:
    _log_luma_once(f'TFDS {split}')
  return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


# --- Folders --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _FileList:
  paths: tuple[str, ...]  # Readable images, sorted by file name.
  sizes: tuple[tuple[int, int], ...]  # (height, width) of each, as decoded.


def _folder_domain_dir(root: str, split: str) -> str:
  if not os.path.isdir(root):
    raise FileNotFoundError(
      f"Dataset folder {root!r} does not exist (config.dataset='folder:{root}'). "
      'Expected PATH/trainA, PATH/trainB, PATH/testA, PATH/testB holding '
      f'{"/".join(e[1:] for e in image_files.IMAGE_EXTENSIONS)} images.'
    )
  directory = os.path.join(root, split)
  if not os.path.isdir(directory):
    raise FileNotFoundError(
      f'Dataset folder {root!r} has no {split}/ subfolder. Expected PATH/trainA, '
      "PATH/trainB, PATH/testA, PATH/testB (the official repo's layout)."
    )
  return directory


@functools.lru_cache(maxsize=32)
def _validated(
  paths: tuple[str, ...], stamp: tuple[Any, ...], max_side: int
) -> _FileList:
  """Decodes every file once in threads; logs and drops the unreadable ones."""
  del stamp  # Part of the cache key only: a changed folder is validated again.
  # PIL releases the GIL while decoding; few threads bound the memory of huge files.
  workers = min(16, 2 * (os.cpu_count() or 1))
  with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
    results = list(
      pool.map(functools.partial(image_files.check_readable, max_side=max_side), paths)
    )
  good, sizes, bad = [], [], []
  for path, result in zip(paths, results):
    if isinstance(result, str):
      bad.append(path)
      logging.warning('Skipping unreadable image %s (%s).', path, result)
    else:
      good.append(path)
      sizes.append(result)
  if bad:
    logging.warning(
      'Skipped %d unreadable of %d images in %s.',
      len(bad),
      len(paths),
      os.path.dirname(paths[0]),
    )
  return _FileList(tuple(good), tuple(sizes))


def _stamp(path: str) -> tuple[int, float] | str:
  """(size, mtime) of a file; why not for a dangling or looping link (skipped later)."""
  try:
    stat = os.stat(path)
  except OSError as e:
    return image_files.describe_error(e)
  return stat.st_size, stat.st_mtime


def _folder_files(root: str, split: str, max_side: int) -> _FileList:
  """The readable images of PATH/split, validated once per process."""
  directory = _folder_domain_dir(root, split)
  paths = image_files.list_images(directory)
  if not paths:
    raise ValueError(
      f'No images in {directory} (looked for {", ".join(image_files.IMAGE_EXTENSIONS)} files).'
    )
  stamp = tuple(_stamp(p) for p in paths)
  files = _validated(tuple(paths), stamp, max_side)
  if not files.paths:
    raise ValueError(
      f'Every one of the {len(paths)} files in {directory} is unreadable as an image '
      '(see the log for each one).'
    )
  return files


def _folder_gt(root: str, split: str, files: _FileList) -> list[str] | None:
  """Ground-truth paths for a test split's files (same names in `split`_gt/), or None."""
  gt_dir = os.path.join(root, f'{split}_gt')
  if not os.path.isdir(gt_dir):
    return None
  return [os.path.join(gt_dir, os.path.basename(p)) for p in files.paths]


def _stems(paths: list[str] | tuple[str, ...]) -> list[str]:
  """File stems, with the extension kept where two files share a stem."""
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  dupes = {s for s in stems if stems.count(s) > 1}
  return [
    os.path.basename(p).replace('.', '_') if s in dupes else s
    for p, s in zip(paths, stems)
  ]


def _pil_dataset(paths: list[str], max_side: int, channels: int = 3) -> tf.data.Dataset:
  """uint8 [H, W, channels] images decoded by PIL in parallel; failures become empty."""

  def load(path: bytes) -> np.ndarray:
    try:
      rgb = image_files.read_rgb(path.decode(), max_side)
    except Exception as e:  # pylint: disable=broad-except  # Changed since validation.
      logging.warning('Skipping unreadable image %s (%s).', path.decode(), e)
      return np.zeros((0, 0, channels), np.uint8)
    if channels == 1 and not channels_lib.is_gray(rgb):
      _log_luma_once(os.path.dirname(path.decode()))
    return channels_lib.match8(rgb, channels)

  def decode(path):
    image = tf.numpy_function(load, [path], tf.uint8, stateful=False)
    image.set_shape([None, None, channels])
    return image

  ds = tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
  return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)


# --- Channels -------------------------------------------------------------------------

_LUMA_LOGGED: set[str] = set()


def _log_luma_once(where: str) -> None:
  """Says once per source that its colour images are read as grayscale."""
  if where not in _LUMA_LOGGED:
    _LUMA_LOGGED.add(where)
    logging.info(
      'Colour images in %s belong to a 1-channel domain: converted to luma '
      "(0.299 R + 0.587 G + 0.114 B, as PIL's convert('L')).",
      where,
    )


def match_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
  """uint8 [H, W, 1 | 3] -> [H, W, channels], as `channels.match8` (luma bit-exact)."""
  have = image.shape[-1]
  if have == channels:
    return image
  if channels == 3:
    return tf.repeat(image, 3, axis=-1)
  x = tf.cast(image, tf.int32)
  r, g, b = channels_lib._LUMA_FIXED  # pylint: disable=protected-access
  y = (r * x[..., 0] + g * x[..., 1] + b * x[..., 2] + (1 << 15)) // (1 << 16)
  return tf.cast(y, tf.uint8)[..., None]


# --- All sources ----------------------------------------------------------------------


def _paired() -> Any:
  """The paired sources' module (it builds on this one, hence imported on use)."""
  from cyclegan_jax.data import paired  # pylint: disable=g-import-not-at-top

  return paired


def _is_aligned(config: ml_collections.ConfigDict) -> bool:
  return config.get('dataset_mode', 'unaligned') == 'aligned'


def _split_dataset(
  config: ml_collections.ConfigDict,
  split: str,
  *,
  process_index: int,
  process_count: int,
  max_images: int = -1,
  with_gt: bool = False,
) -> tuple[tf.data.Dataset, int]:
  """This process's part of a split: ({'image', 'name'[, 'gt']} uint8, its size).

  Order is fixed (sorted files, TFDS record order, synthetic index); `max_images` >= 0
  keeps the first ones of the whole split before it is divided between processes.
  'image' has its domain's channels, 'gt' (the other domain's image) the other's.
  Aligned: the `split[-1]` sides of the pairs of phase `split[:-1]`, 'gt' their partners.
  """
  if _is_aligned(config):
    return _paired().split_dataset(
      config,
      split,
      process_index=process_index,
      process_count=process_count,
      max_images=max_images,
      with_gt=with_gt,
    )
  source = _parse_source(config.dataset)
  nc = channels_lib.domain_channels(config)
  domain = split[-1]
  channels, gt_channels = nc[domain], nc['B' if domain == 'A' else 'A']
  if source.kind == 'tfds':
    builder = _tfds_builder(source.name, config.data_dir)
    total = _tfds_count(builder, split)
    if max_images >= 0:
      total = min(total, max_images)
    count = len(range(total)[_process_slice(total, process_index, process_count)])
    ds = _tfds_split(
      builder,
      split,
      process_index=process_index,
      process_count=process_count,
      max_images=max_images,
      channels=channels,
    )
    if max_images >= 0:
      ds = ds.take(count)  # Already sliced by TFDS; mocked builders ignore slices.
    return ds, count

  if source.kind == 'folder':
    files = _folder_files(source.name, split, config.max_image_side)
    paths, names = list(files.paths), _stems(files.paths)
    gt_paths = _folder_gt(source.name, split, files) if with_gt else None
    if max_images >= 0:
      paths, names = paths[:max_images], names[:max_images]
      gt_paths = gt_paths[:max_images] if gt_paths else gt_paths
    part = _process_slice(len(paths), process_index, process_count)
    paths, names = paths[part], names[part]
    features = {
      'image': _pil_dataset(paths, config.max_image_side, channels),
      'name': tf.data.Dataset.from_tensor_slices(tf.constant(names, tf.string)),
    }
    if gt_paths is not None:
      features['gt'] = _pil_dataset(gt_paths[part], config.max_image_side, gt_channels)
    ds = tf.data.Dataset.zip(features)
    # Files that became unreadable after validation (or whose gt is unreadable) are
    # dropped here rather than stopping the run.
    ds = ds.filter(
      lambda ex: tf.reduce_all([tf.size(v) > 0 for k, v in ex.items() if k != 'name'])
    )
    return ds, len(paths)

  images, gt = synthetic.load_split(source.name, split, config.load_size)
  names = synthetic.names(source.name, split)
  if max_images >= 0:
    images, names = images[:max_images], names[:max_images]
    gt = gt[:max_images] if gt is not None else None
  part = _process_slice(len(images), process_index, process_count)
  features = {
    'image': channels_lib.match8(images[part], channels),
    'name': tf.constant(names[part], tf.string),
  }
  if with_gt and gt is not None:
    features['gt'] = channels_lib.match8(gt[part], gt_channels)
  return tf.data.Dataset.from_tensor_slices(features), len(images[part])


def eval_split(config: ml_collections.ConfigDict) -> str:
  """The split evaluation scores: 'test' or 'val' (`config.eval.split`)."""
  return config.get('eval', {}).get('split', 'test')


def check_eval_split(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError (one line) where `config.eval.split` is 'val' and the dataset
  has no validation split."""
  if eval_split(config) != 'val' or _is_aligned(config):
    return  # Aligned and TFDS sets are refused by config_checks.validate.
  source = _parse_source(config.dataset)
  if source.kind != 'folder' or not os.path.isdir(source.name):
    return  # A missing folder gets the data loader's own message.
  missing = [
    d
    for d in ('valA', 'valB')
    if not os.path.isdir(os.path.join(source.name, d))
    or not image_files.list_images(os.path.join(source.name, d))
  ]
  if missing:
    raise ValueError(
      f"config.eval.split='val', but {source.name} has no images in {missing[0]}/: add "
      'held-out images there (and valA_gt/, valB_gt/ for PSNR/SSIM), or evaluate '
      'with --config.eval.split=test.'
    )


def _has_ground_truth(config: ml_collections.ConfigDict, split: str) -> bool:
  if _is_aligned(config):
    return True  # Every A has its B.
  source = _parse_source(config.dataset)
  if source.kind == 'synthetic':
    return True
  if source.kind == 'folder':
    return os.path.isdir(os.path.join(source.name, f'{split}_gt'))
  return False


def dataset_info(config: ml_collections.ConfigDict) -> DatasetInfo:
  """Split sizes over all processes (folders: readable files; nothing else decoded).

  Aligned: num_a, num_b and epoch_length are the number of train pairs.
  """
  if _is_aligned(config):
    return _paired().dataset_info(config)
  source = _parse_source(config.dataset)
  if source.kind == 'tfds':
    builder = _tfds_builder(source.name, config.data_dir)
    num_a, num_b = _tfds_count(builder, 'trainA'), _tfds_count(builder, 'trainB')
  elif source.kind == 'folder':
    num_a = len(_folder_files(source.name, 'trainA', config.max_image_side).paths)
    num_b = len(_folder_files(source.name, 'trainB', config.max_image_side).paths)
  else:
    num_a, num_b = synthetic.num_examples('trainA'), synthetic.num_examples('trainB')
  return DatasetInfo(
    num_a=num_a,
    num_b=num_b,
    epoch_length=max(num_a, num_b),
    has_ground_truth=(
      _has_ground_truth(config, 'testA') and _has_ground_truth(config, 'testB')
    ),
  )


# ----------------------------------------------------------------------------------
# Preprocessing (the reference's get_transform).


def _resize(image: tf.Tensor, height, width) -> tf.Tensor:
  """Bicubic resize of uint8 [H, W, 3], antialiased like PIL's BICUBIC; returns uint8."""
  out = tf.image.resize(
    tf.cast(image, tf.float32),
    tf.stack([height, width]),
    method='bicubic',
    antialias=True,
  )
  return tf.cast(tf.clip_by_value(tf.round(out), 0.0, 255.0), tf.uint8)


def _resize_if(image: tf.Tensor, height, width) -> tf.Tensor:
  shape = tf.shape(image)
  return tf.cond(
    tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width)),
    lambda: image,
    lambda: _resize(image, height, width),
  )


def deterministic_preprocess(
  image: tf.Tensor, config: ml_collections.ConfigDict
) -> tf.Tensor:
  """The non-random part of the transform (cacheable): uint8 in, uint8 out.

  `resize_and_crop`: load_size × load_size. `scale_width_and_crop`: width load_size,
  height max(h·load/w, crop) as the reference's `__scale_width`. `crop`: as is. `none`: H
  and W rounded to multiples of 4 (the reference's `__make_power_2`, base 4). Then, for the
  cropping modes, images smaller than the crop are resized up (aspect kept).
  """
  mode, load, crop = config.preprocess, config.load_size, config.crop_size
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  if mode == 'resize_and_crop':
    image = _resize_if(image, load, load)
  elif mode == 'scale_width_and_crop':
    new_h = tf.maximum(tf.cast(load * h // w, tf.int32), crop)  # int() truncation.
    image = _resize_if(image, new_h, load)
  elif mode == 'none':

    def round4(x):  # Python's round(): half to even, like tf.round.
      return tf.maximum(tf.cast(tf.round(tf.cast(x, tf.float32) / 4.0), tf.int32) * 4, 4)

    return _resize_if(image, round4(h), round4(w))
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  short = tf.minimum(h, w)
  scale = tf.maximum(1.0, crop / tf.cast(short, tf.float32))
  new_h = tf.maximum(
    tf.cast(tf.math.ceil(tf.cast(h, tf.float32) * scale), tf.int32), crop
  )
  new_w = tf.maximum(
    tf.cast(tf.math.ceil(tf.cast(w, tf.float32) * scale), tf.int32), crop
  )
  return _resize_if(image, new_h, new_w)


def random_augment(
  image: tf.Tensor, seed: tf.Tensor, config: ml_collections.ConfigDict
) -> tf.Tensor:
  """Random crop (not for 'none'), random flip, scale to float32 [-1, 1].

  Args:
    image: uint8 [H, W, C] from `deterministic_preprocess`.
    seed: int32 [2] stateless seed, distinct per element.
    config: the config (preprocess, crop_size, no_flip).
  """
  seeds = tf.random.experimental.stateless_split(seed, 2)
  if config.preprocess != 'none':
    crop = config.crop_size
    image = tf.image.stateless_random_crop(
      image, [crop, crop, image.shape[-1]], seed=seeds[0]
    )
  if not config.no_flip:
    image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
  return to_float(image)


def to_float(image: tf.Tensor) -> tf.Tensor:
  """uint8 [0, 255] -> float32 [-1, 1] (the reference's Normalize((0.5,)*3, (0.5,)*3))."""
  return tf.cast(image, tf.float32) / 127.5 - 1.0


# ----------------------------------------------------------------------------------
# Datasets.


def _seeds(
  config: ml_collections.ConfigDict, process_index: int, domain: str
) -> tuple[int, int]:
  """(shuffle seed, augmentation seed) for one domain on one process."""
  state = np.random.SeedSequence(
    [config.seed, process_index, ord(domain)]
  ).generate_state(2)
  return int(state[0] >> 1), int(state[1] >> 1)


def _fits_in_cache(
  config: ml_collections.ConfigDict, count: int, sizes: tuple[tuple[int, int], ...] | None
) -> bool:
  if not config.cache:
    return False
  if config.preprocess == 'resize_and_crop':
    pixels = count * config.load_size**2
  elif sizes:  # Folder sources: sizes are known from validation.
    pixels = sum(h * w for h, w in sizes)
  else:  # TFDS cycle_gan images are 256×256 (600×600 for maps).
    pixels = count * max(config.load_size, 600) ** 2
  return pixels * 3 <= config.cache_max_gb * 2**30


def _domain_train_dataset(
  config: ml_collections.ConfigDict,
  domain: str,
  batch: int,
  *,
  process_index: int,
  process_count: int,
) -> tf.data.Dataset:
  split = f'train{domain}'
  ds, count = _split_dataset(
    config, split, process_index=process_index, process_count=process_count
  )
  if count == 0:
    raise ValueError(
      f'Process {process_index} of {process_count} got no images of {split} '
      f'({config.dataset}); use fewer processes or a bigger dataset.'
    )
  if config.preprocess == 'none' and batch > 1:
    logging.warning(
      "preprocess='none' keeps each image's size; batches of %d need "
      'images of equal size.',
      batch,
    )
  source = _parse_source(config.dataset)
  sizes = (
    _folder_files(source.name, split, config.max_image_side).sizes
    if source.kind == 'folder'
    else None
  )
  ds = ds.map(
    lambda ex: deterministic_preprocess(ex['image'], config),
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  return shuffled_augmented_batches(
    ds,
    config,
    cache=_fits_in_cache(config, count, sizes),
    count=count,
    seeds=_seeds(config, process_index, domain),
    augment=random_augment,
    batch=batch,
  )


def shuffled_augmented_batches(
  ds: tf.data.Dataset,
  config: ml_collections.ConfigDict,
  *,
  cache: bool,
  count: int,
  seeds: tuple[int, int],
  augment: Callable[[Any, tf.Tensor, ml_collections.ConfigDict], Any],
  batch: int,
) -> tf.data.Dataset:
  """The train tail of a decoded split (one domain, or pairs): optional cache, shuffle
  with `seeds[0]`, repeat, `augment(element, seed, config)` seeded per element, batch."""
  if cache:
    ds = ds.cache()
  shuffle_seed, augment_seed = seeds
  ds = ds.shuffle(
    min(config.shuffle_buffer_size, count) if config.shuffle_buffer_size > 0 else count,
    seed=shuffle_seed,
    reshuffle_each_iteration=True,
  )
  ds = ds.repeat()
  # Element i's augmentation is seeded by (augment_seed, i): reproducible under any
  # parallelism, and different on every epoch.
  ds = tf.data.Dataset.zip((tf.data.Dataset.counter(), ds))
  ds = ds.map(
    lambda i, element: augment(
      element, tf.stack([tf.constant(augment_seed, tf.int64), i]), config
    ),
    num_parallel_calls=tf.data.AUTOTUNE,
  )
  return ds.batch(batch, drop_remainder=True)


def create_train_dataset(
  config: ml_collections.ConfigDict, *, process_index: int = 0, process_count: int = 1
) -> tuple[tf.data.Dataset, DatasetInfo]:
  """The infinite training stream of this process: unaligned, or pairs (aligned).

  Args:
    config: the config (dataset, data_dir, preprocess, load_size, crop_size, no_flip,
      batch_size, shuffle_buffer_size, cache, cache_max_gb, max_image_side, seed).
    process_index: this process (`jax.process_index()`).
    process_count: all processes (`jax.process_count()`).

  Returns:
    (dataset, info): dicts {'A': float32 [b, crop, crop, input_nc], 'B': [..., output_nc]}
    in [-1, 1] with
    b = batch_size // process_count (for preprocess 'none' the size is the image's,
    rounded to a multiple of 4), and the split sizes over all processes. Aligned: row
    i of 'A' and of 'B' are one pair, cropped and flipped alike.
  """
  if config.preprocess not in PREPROCESS_MODES:
    raise ValueError(
      f'preprocess must be one of {PREPROCESS_MODES}, got {config.preprocess!r}.'
    )
  if config.preprocess in ('resize_and_crop', 'scale_width_and_crop') and (
    config.load_size < config.crop_size
  ):
    raise ValueError(
      f'load_size ({config.load_size}) must be >= crop_size '
      f'({config.crop_size}) for preprocess={config.preprocess!r}.'
    )
  if config.batch_size % process_count:
    raise ValueError(
      f'batch_size ({config.batch_size}) must be divisible by the number of processes '
      f'({process_count}): each process feeds batch_size / process_count pairs.'
    )
  batch = config.batch_size // process_count
  if batch < 1:
    raise ValueError(f'batch_size must be >= 1, got {config.batch_size}.')
  info = dataset_info(config)
  if _is_aligned(config):
    ds = _paired().train_dataset(
      config, batch, process_index=process_index, process_count=process_count
    )
  else:
    ds_a, ds_b = (
      _domain_train_dataset(
        config, d, batch, process_index=process_index, process_count=process_count
      )
      for d in 'AB'
    )
    ds = tf.data.Dataset.zip({'A': ds_a, 'B': ds_b})
  options = tf.data.Options()
  options.deterministic = True
  ds = ds.with_options(options)
  return ds.prefetch(tf.data.AUTOTUNE), info


def create_eval_dataset(
  config: ml_collections.ConfigDict,
  domain: str,
  *,
  process_index: int = 0,
  process_count: int = 1,
  max_images: int = -1,
  phase: str | None = None,
) -> tf.data.Dataset:
  """This process's part of test split `domain`, full size, batch 1, in a fixed order.

  Args:
    config: the config (dataset, data_dir, max_image_side, load_size for synthetic).
    domain: 'A' (testA) or 'B' (testB).
    process_index: this process.
    process_count: all processes; each gets a disjoint contiguous part.
    max_images: >= 0: only the first max_images of the whole split.
    phase: 'test' or 'val' (valA / valB); None: `config.eval.split`.

  Returns:
    Dicts {'image': float32 [1, H, W, C] in [-1, 1] (C: the domain's channels), 'name':
    string [1] (a file stem), and 'gt': float32 [1, H, W, C'] — the true translation
    into the other domain, in its channels — where the source has ground truth}.
    Aligned: 'image' is the domain's side of each test pair (full size, the half of a
    side-by-side file), 'gt' its partner (always there), 'name' the pair's stem; the
    two domains' datasets list the same pairs in the same order.
  """
  if domain not in ('A', 'B'):
    raise ValueError(f"domain must be 'A' or 'B', got {domain!r}.")
  split = f'{phase or eval_split(config)}{domain}'
  with_gt = _has_ground_truth(config, split)
  ds, _ = _split_dataset(
    config,
    split,
    process_index=process_index,
    process_count=process_count,
    max_images=max_images,
    with_gt=with_gt,
  )

  def convert(ex):
    out = {'image': to_float(ex['image']), 'name': ex['name']}
    if 'gt' in ex:
      shape = tf.shape(ex['image'])
      # A ground truth of another size is compared at the image's size.
      out['gt'] = to_float(_resize_if(ex['gt'], shape[0], shape[1]))
    return out

  ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(1).prefetch(tf.data.AUTOTUNE)


def fixed_test_images(
  config: ml_collections.ConfigDict, domain: str, n: int
) -> np.ndarray:
  """The first n test images of a domain for sample grids: float32 [n, crop, crop, C].

  Each is resized (bicubic) so its short side is crop_size, then center-cropped; the
  same on every process and every call. Fewer than n come back if the split is smaller.
  Aligned: row i of domain A's and of domain B's are the two sides of one pair.
  """
  crop = config.crop_size
  ds = create_eval_dataset(config, domain, max_images=n, phase='test')
  images = []
  for ex in ds.as_numpy_iterator():
    image = tf.convert_to_tensor(
      np.round((ex['image'][0] + 1.0) * 127.5).astype(np.uint8)
    )
    h, w = image.shape[0], image.shape[1]
    scale = crop / min(h, w)
    new_h, new_w = max(crop, round(h * scale)), max(crop, round(w * scale))
    image = _resize_if(image, new_h, new_w)
    top, left = (new_h - crop) // 2, (new_w - crop) // 2
    images.append(to_float(image[top : top + crop, left : left + crop]).numpy())
  if images:
    return np.stack(images)
  return np.zeros(
    (0, crop, crop, channels_lib.domain_channels(config)[domain]), np.float32
  )


def sample_images(config: ml_collections.ConfigDict, domain: str, n: int) -> np.ndarray:
  """`fixed_test_images`, or none (said in one line) where the test split has none."""
  try:
    images = fixed_test_images(config, domain, n)
  except (FileNotFoundError, ValueError) as e:
    logging.warning('Sample grids show no test%s images: %s', domain, e)
    crop, channels = config.crop_size, channels_lib.domain_channels(config)[domain]
    return np.zeros((0, crop, crop, channels), np.float32)
  if len(images) < n:
    logging.info(
      'Sample grids show %d test%s image(s) (num_sample_images=%d).',
      len(images),
      domain,
      n,
    )
  return images
