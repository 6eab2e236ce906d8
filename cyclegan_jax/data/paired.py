"""Paired data for `config.dataset_mode='aligned'` (pix2pix): each A with its true B.

Sources (`config.dataset`):

* `folder:PATH`, the official aligned layout: PATH/train/ and PATH/test/ (else PATH/val/,
  logged) hold images with A and B side by side, A the left half. Each is cut at w // 2;
  an odd width drops the last column (the files are named in the log).
* `folder:PATH`, two folders: PATH/trainA/ + PATH/trainB/ (and testA/ + testB/) whose files
  of equal stem are pairs (trainA/12.jpg with trainB/12.png); files without a partner are
  named and skipped. A B of another size than its A is resized to A's size.
* `synthetic:NAME`: the scenes of the task's trainA / testA drawn in both domains.

TFDS `cycle_gan/*` sets are unpaired: refused. Unreadable files are named and skipped as
in the unaligned folder source.

Training uses the unaligned pipeline's transform with one set of random parameters per
pair (the official `get_params`): A and B are resized alike, then cropped and flipped
together, stacked on the channel axis. An epoch is one pass over the pairs. Evaluation
reads a split as two views in the same order: 'A' yields each A with its B as 'gt', 'B'
each B with its A, at full size as the unaligned evaluation does.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from absl import logging
import ml_collections
import numpy as np
import tensorflow as tf

from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.data import image_files
from cyclegan_jax.data import input_pipeline as ip
from cyclegan_jax.data import synthetic

PHASES = ('train', 'test')
_SHOWN = 5  # File names a skip note shows before "and N more".
_LAYOUTS = (
  'dataset_mode=aligned expects PATH/train and PATH/test (or PATH/val) holding A|B '
  'side-by-side images, or PATH/trainA + PATH/trainB (testA + testB) holding files of '
  'equal names.'
)
_LOGGED: set[str] = set()


def is_aligned(config: ml_collections.ConfigDict) -> bool:
  """True where the config asks for pairs (configs from before the field: unaligned)."""
  return config.get('dataset_mode', 'unaligned') == 'aligned'


def check_source(dataset: str) -> None:
  """Raises a one-line ValueError for a source that has no pairs (TFDS cycle_gan)."""
  if not dataset.startswith(('folder:', 'synthetic:')):
    raise ValueError(
      f"dataset_mode='aligned' needs paired data, but {dataset!r} is a TFDS cycle_gan "
      "set (unpaired): use 'folder:PATH' or 'synthetic:NAME', or "
      "dataset_mode='unaligned'."
    )


def _log_once(message: str, warn: bool = False) -> None:
  if message not in _LOGGED:
    _LOGGED.add(message)
    (logging.warning if warn else logging.info)('%s', message)


def _listed(paths: list[str]) -> str:
  """'a.jpg, b.jpg and 3 more': the first few base names and a count."""
  names = ', '.join(os.path.basename(p) for p in paths[:_SHOWN])
  return names + (f' and {len(paths) - _SHOWN} more' if len(paths) > _SHOWN else '')


# ----------------------------------------------------------------------------------
# Folder layouts.


@dataclasses.dataclass(frozen=True)
class _Pairs:
  a_paths: tuple[str, ...]  # Side-by-side files, or domain A's files.
  b_paths: tuple[str, ...] | None  # Domain B's files (two-folder layout), else None.
  names: tuple[str, ...]  # One stem per pair.
  pixels: int  # Decoded pixels of all the files (for the cache's size check).


def phase_dirs(root: str, phase: str) -> tuple[str, ...]:
  """(side-by-side folder,) or (folder A, folder B) of a phase, or FileNotFoundError."""
  if not os.path.isdir(root):
    raise FileNotFoundError(
      f"Dataset folder {root!r} does not exist (config.dataset='folder:{root}'); "
      + _LAYOUTS
    )
  candidates = ('train',) if phase == 'train' else ('test', 'val')
  for name in candidates:
    directory = os.path.join(root, name)
    if os.path.isdir(directory):
      if phase == 'test':
        _log_once(f'Aligned test split: {directory} (side-by-side A|B images).')
      return (directory,)
  dir_a, dir_b = (os.path.join(root, f'{phase}{d}') for d in 'AB')
  if os.path.isdir(dir_a) and os.path.isdir(dir_b):
    return dir_a, dir_b
  raise FileNotFoundError(
    f'Dataset folder {root!r} has no {"/ or ".join(candidates)}/ and no {phase}A/ with '
    f'{phase}B/; ' + _LAYOUTS
  )


def _validated(paths: list[str], max_side: int) -> ip._FileList:  # pylint: disable=protected-access
  """The readable ones of `paths` (validated once, skips logged, as the folder source)."""
  stamp = tuple(ip._stamp(p) for p in paths)  # pylint: disable=protected-access
  return ip._validated(tuple(paths), stamp, max_side)  # pylint: disable=protected-access


def _side_by_side(directory: str, max_side: int) -> _Pairs:
  """Pairs of the official layout: every readable image at least 2 pixels wide."""
  paths = image_files.list_images(directory)
  if not paths:
    raise ValueError(
      f'No images in {directory}: put A|B side-by-side images there (A the left half, '
      f'{"/".join(e[1:] for e in image_files.IMAGE_EXTENSIONS)}).'
    )
  files = _validated(paths, max_side)
  narrow = [p for p, (_, w) in zip(files.paths, files.sizes) if w < 2]
  if narrow:
    _log_once(
      f'Skipping {len(narrow)} image(s) in {directory} under 2 pixels wide (no A|B '
      f'halves): {_listed(narrow)}.',
      warn=True,
    )
  odd = [p for p, (_, w) in zip(files.paths, files.sizes) if w % 2 and w > 1]
  if odd:
    _log_once(
      f'{len(odd)} image(s) in {directory} have an odd width: A and B are the w // 2 '
      f'columns on each side, the last column is dropped: {_listed(odd)}.',
      warn=True,
    )
  kept = [(p, s) for p, s in zip(files.paths, files.sizes) if s[1] >= 2]
  if not kept:
    raise ValueError(
      f'None of the {len(paths)} files in {directory} is a readable A|B image (see the '
      'log for each one); replace them with side-by-side image pairs.'
    )
  kept_paths = [p for p, _ in kept]
  return _Pairs(
    a_paths=tuple(kept_paths),
    b_paths=None,
    names=tuple(ip._stems(kept_paths)),  # pylint: disable=protected-access
    pixels=sum(h * w for _, (h, w) in kept),
  )


def _by_stem(paths: list[str]) -> tuple[dict[str, str], list[str]]:
  """{stem: path} of the files whose stem is unique, and the ambiguous files."""
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  unique = {s: p for s, p in zip(stems, paths) if stems.count(s) == 1}
  return unique, [p for s, p in zip(stems, paths) if stems.count(s) > 1]


def _two_folders(dir_a: str, dir_b: str, max_side: int) -> _Pairs:
  """Pairs of files of equal stem; orphans and ambiguous names are named and skipped."""
  listed = {}
  for directory in (dir_a, dir_b):
    listed[directory] = image_files.list_images(directory)
    if not listed[directory]:
      raise ValueError(
        f'No images in {directory}: dataset_mode=aligned pairs its files with the '
        'files of equal name in the other folder.'
      )
  (by_a, ambiguous_a), (by_b, ambiguous_b) = (_by_stem(listed[d]) for d in (dir_a, dir_b))
  for directory, ambiguous in ((dir_a, ambiguous_a), (dir_b, ambiguous_b)):
    if ambiguous:
      _log_once(
        f'Skipping {len(ambiguous)} file(s) in {directory} that share a name with '
        f'another extension (which is the pair?): {_listed(ambiguous)}.',
        warn=True,
      )
  for directory, mine, theirs, other in (
    (dir_a, by_a, by_b, dir_b),
    (dir_b, by_b, by_a, dir_a),
  ):
    orphans = [p for s, p in mine.items() if s not in theirs]
    if orphans:
      _log_once(
        f'Skipping {len(orphans)} of {len(listed[directory])} file(s) in {directory} '
        f'with no file of the same name in {other}: {_listed(orphans)}.',
        warn=True,
      )
  stems = sorted(set(by_a) & set(by_b))
  if not stems:
    raise ValueError(
      f'No pairs in {dir_a} and {dir_b}: dataset_mode=aligned pairs files of equal name '
      "(12.jpg with 12.png); rename them to match, or use dataset_mode='unaligned'."
    )
  files_a = _validated([by_a[s] for s in stems], max_side)
  files_b = _validated([by_b[s] for s in stems], max_side)
  size_a = dict(zip(files_a.paths, files_a.sizes))
  size_b = dict(zip(files_b.paths, files_b.sizes))
  kept = [s for s in stems if by_a[s] in size_a and by_b[s] in size_b]
  if not kept:
    raise ValueError(
      f'Every one of the {len(stems)} pairs in {dir_a} and {dir_b} has an unreadable '
      'file (see the log for each one).'
    )
  if len(kept) < len(stems):
    logging.warning(
      'Skipped %d pair(s) of %s and %s with an unreadable file.',
      len(stems) - len(kept),
      dir_a,
      dir_b,
    )
  pixels = sum(np.prod(size_a[by_a[s]]) + np.prod(size_b[by_b[s]]) for s in kept)
  return _Pairs(
    a_paths=tuple(by_a[s] for s in kept),
    b_paths=tuple(by_b[s] for s in kept),
    names=tuple(kept),
    pixels=int(pixels),
  )


def _folder_pairs(root: str, phase: str, max_side: int) -> _Pairs:
  dirs = phase_dirs(root, phase)
  if len(dirs) == 1:
    return _side_by_side(dirs[0], max_side)
  return _two_folders(dirs[0], dirs[1], max_side)


def _read_pair(a_path: str, b_path: str, max_side: int) -> tuple[np.ndarray, np.ndarray]:
  """(A, B) uint8 RGB of one pair: two files, or the halves of one (b_path empty)."""
  if b_path:
    return image_files.read_rgb(a_path, max_side), image_files.read_rgb(b_path, max_side)
  both = image_files.read_rgb(a_path, max_side)
  half = both.shape[1] // 2
  return both[:, :half], both[:, half : 2 * half]


def _decoded_pairs(
  pairs: _Pairs, part: slice, max_side: int, nc: dict[str, int]
) -> tf.data.Dataset:
  """{'A', 'B': uint8 [H, W, C], 'name'} decoded by PIL in parallel; failures dropped."""
  a_paths = list(pairs.a_paths[part])
  b_paths = list(pairs.b_paths[part]) if pairs.b_paths else [''] * len(a_paths)

  def load(a_path: bytes, b_path: bytes) -> tuple[np.ndarray, np.ndarray]:
    a_path, b_path = a_path.decode(), b_path.decode()
    try:
      a, b = _read_pair(a_path, b_path, max_side)
    except Exception as e:  # pylint: disable=broad-except  # Changed since validation.
      logging.warning(
        'Skipping unreadable image %s (%s).',
        b_path or a_path,
        image_files.describe_error(e),
      )
      return np.zeros((0, 0, nc['A']), np.uint8), np.zeros((0, 0, nc['B']), np.uint8)
    out = []
    for image, path, channels in ((a, a_path, nc['A']), (b, b_path or a_path, nc['B'])):
      if channels == 1 and not channels_lib.is_gray(image):
        ip._log_luma_once(os.path.dirname(path))  # pylint: disable=protected-access
      out.append(np.ascontiguousarray(channels_lib.match8(image, channels)))
    return out[0], out[1]

  def decode(a_path, b_path, name):
    a, b = tf.numpy_function(load, [a_path, b_path], [tf.uint8, tf.uint8], stateful=False)
    a.set_shape([None, None, nc['A']])
    b.set_shape([None, None, nc['B']])
    return {'A': a, 'B': b, 'name': name}

  ds = tf.data.Dataset.from_tensor_slices(
    (
      tf.constant(a_paths, tf.string),
      tf.constant(b_paths, tf.string),
      tf.constant(list(pairs.names[part]), tf.string),
    )
  )
  ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.filter(lambda ex: tf.logical_and(tf.size(ex['A']) > 0, tf.size(ex['B']) > 0))


# ----------------------------------------------------------------------------------
# All sources.


def _source(config: ml_collections.ConfigDict) -> Any:
  check_source(config.dataset)
  return ip._parse_source(config.dataset)  # pylint: disable=protected-access


def num_pairs(config: ml_collections.ConfigDict, phase: str) -> int:
  """Pairs of a phase ('train' | 'test') over all processes."""
  source = _source(config)
  if source.kind == 'synthetic':
    return synthetic.num_examples(f'{phase}A')
  return len(_folder_pairs(source.name, phase, config.max_image_side).names)


def _has_test_split(config: ml_collections.ConfigDict) -> bool:
  source = _source(config)
  if source.kind == 'synthetic':
    return True
  try:
    phase_dirs(source.name, 'test')
  except FileNotFoundError:
    return False
  return True


def dataset_info(config: ml_collections.ConfigDict) -> ip.DatasetInfo:
  """Sizes in pairs: num_a = num_b = epoch_length = the train pairs (as the official)."""
  n = num_pairs(config, 'train')
  return ip.DatasetInfo(
    num_a=n, num_b=n, epoch_length=n, has_ground_truth=_has_test_split(config)
  )


def pair_dataset(
  config: ml_collections.ConfigDict,
  phase: str,
  *,
  process_index: int = 0,
  process_count: int = 1,
  max_images: int = -1,
) -> tuple[tf.data.Dataset, int, int]:
  """This process's pairs in a fixed order, uint8: ({'A', 'B', 'name'}, count, pixels).

  'A' has model.input_nc channels, 'B' model.output_nc; `max_images` >= 0 keeps the first
  pairs of the whole phase before it is divided between processes (contiguous parts, as
  the unaligned sources). `pixels` bounds the decoded size of all the pairs.
  """
  if phase not in PHASES:
    raise ValueError(f'phase must be one of {PHASES}, got {phase!r}.')
  source = _source(config)
  nc = channels_lib.domain_channels(config)
  if source.kind == 'synthetic':
    a, b = synthetic.load_pairs(source.name, phase, config.load_size)
    names = synthetic.pair_names(source.name, phase)
    n = len(a) if max_images < 0 else min(len(a), max_images)
    part = ip._process_slice(n, process_index, process_count)  # pylint: disable=protected-access
    ds = tf.data.Dataset.from_tensor_slices(
      {
        'A': channels_lib.match8(a[:n][part], nc['A']),
        'B': channels_lib.match8(b[:n][part], nc['B']),
        'name': tf.constant(names[:n][part], tf.string),
      }
    )
    return ds, len(range(n)[part]), 2 * n * config.load_size**2
  pairs = _folder_pairs(source.name, phase, config.max_image_side)
  n = len(pairs.names) if max_images < 0 else min(len(pairs.names), max_images)
  part = ip._process_slice(n, process_index, process_count)  # pylint: disable=protected-access
  ds = _decoded_pairs(pairs, part, config.max_image_side, nc)
  return ds, len(range(n)[part]), pairs.pixels


def split_dataset(
  config: ml_collections.ConfigDict,
  split: str,
  *,
  process_index: int,
  process_count: int,
  max_images: int = -1,
  with_gt: bool = False,
) -> tuple[tf.data.Dataset, int]:
  """One side of a paired phase, as `input_pipeline._split_dataset` gives a domain.

  `split` 'testA' yields {'image': A, 'name'[, 'gt': its B]}, 'testB' the B sides with
  their A as 'gt', in the same order (so the i-th elements of the two are one pair), all
  uint8 at A's decoded size.
  """
  phase, side = split[:-1], split[-1]
  other = 'B' if side == 'A' else 'A'
  ds, count, _ = pair_dataset(
    config,
    phase,
    process_index=process_index,
    process_count=process_count,
    max_images=max_images,
  )

  def view(ex):
    shape = tf.shape(ex['A'])
    # A B of another size (two folders) is seen at its A's size, as in training.
    pair = {'A': ex['A'], 'B': ip._resize_if(ex['B'], shape[0], shape[1])}  # pylint: disable=protected-access
    out = {'image': pair[side], 'name': ex['name']}
    if with_gt:
      out['gt'] = pair[other]
    return out

  return ds.map(view), count


# ----------------------------------------------------------------------------------
# Training.


def _preprocess_pair(
  ex: dict[str, tf.Tensor], config: ml_collections.ConfigDict
) -> dict[str, tf.Tensor]:
  """The deterministic resize of both sides; B follows A's size (one crop fits both)."""
  a = ip.deterministic_preprocess(ex['A'], config)
  b = ip.deterministic_preprocess(ex['B'], config)
  shape = tf.shape(a)
  return {'A': a, 'B': ip._resize_if(b, shape[0], shape[1])}  # pylint: disable=protected-access


def augment_pair(
  pair: dict[str, tf.Tensor], seed: tf.Tensor, config: ml_collections.ConfigDict
) -> dict[str, tf.Tensor]:
  """`random_augment` with one crop and one flip for both sides (the official get_params).

  Args:
    pair: {'A': uint8 [H, W, C_A], 'B': uint8 [H, W, C_B]} of equal H and W.
    seed: int [2] stateless seed, distinct per pair.
    config: the config (preprocess, crop_size, no_flip).
  """
  channels_a = pair['A'].shape[-1]
  both = ip.random_augment(tf.concat([pair['A'], pair['B']], axis=-1), seed, config)
  return {'A': both[..., :channels_a], 'B': both[..., channels_a:]}


def _fits_in_cache(config: ml_collections.ConfigDict, count: int, pixels: int) -> bool:
  if not config.cache:
    return False
  if config.preprocess == 'resize_and_crop':
    pixels = 2 * count * config.load_size**2
  return pixels * 3 <= config.cache_max_gb * 2**30


def train_dataset(
  config: ml_collections.ConfigDict,
  batch: int,
  *,
  process_index: int,
  process_count: int,
) -> tf.data.Dataset:
  """This process's infinite stream of batches {'A', 'B'} of true pairs, float32 [-1, 1].

  Shuffled and augmented as the unaligned stream, seeded by (config.seed, process).
  """
  ds, count, pixels = pair_dataset(
    config, 'train', process_index=process_index, process_count=process_count
  )
  if count == 0:
    raise ValueError(
      f'Process {process_index} of {process_count} got no pairs of the train split '
      f'({config.dataset}); use fewer processes or a bigger dataset.'
    )
  if config.preprocess == 'none' and batch > 1:
    logging.warning(
      "preprocess='none' keeps each image's size; batches of %d need "
      'images of equal size.',
      batch,
    )
  ds = ds.map(
    lambda ex: _preprocess_pair(ex, config), num_parallel_calls=tf.data.AUTOTUNE
  )
  # 'P': a seed of its own, apart from the unaligned domains' 'A' and 'B'.
  return ip.shuffled_augmented_batches(
    ds,
    config,
    cache=_fits_in_cache(config, count, pixels),
    count=count,
    seeds=ip._seeds(config, process_index, 'P'),  # pylint: disable=protected-access
    augment=augment_pair,
    batch=batch,
  )
