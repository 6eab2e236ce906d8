"""The FCN-score of labels→photo (the papers' Table 2), and photo→labels (Table 3).

  python -m cyclegan_jax.evaluation.fcn_score --dataset=synthetic:streets \
      [--images=WORKDIR/eval/step_N/images/BtoA --task=labels_to_photo] [--json]

A segmentation network (`nets/segmenter.py`) is trained once on the dataset's real
training (photo, label map) pairs and cached in `--cache_dir`, in a folder named by the
dataset and a hash of every setting and of the training files (a later call with the
same settings loads it). It then labels each generated photo; the three scores of
`segmentation` compare its labels with the label map the photo was generated from. Its
score on the real test photos is the ceiling (the papers' "ground truth" row).

`--images` is a folder the evaluation wrote (`<name>_real.png`, `<name>_fake.png`,
`<name>_gt.png`): for labels_to_photo the fakes are the photos, the reals their input
label maps and the gts (where present) the real photos, scored too as the ceiling on
those scenes at that size; for photo_to_labels (no segmenter needed) the fakes are the
painted label maps and the gts the true ones. Label-map images are read by their nearest Cityscapes
colour. Without `--images` the command trains (or loads) the segmenter and prints the
ceiling. Datasets: `synthetic:streets` (exact label ids) and `folder:PATH` in the layout
of the official `prepare_cityscapes_dataset.py` (photo = A, colour label map = B).

The table runner calls `load_or_train`, `score_labels_to_photo`, `ceiling` and
`segmentation.score_photo_to_labels`, all on numpy arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import time
import types
from typing import Any, Sequence

from absl import flags
from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from cyclegan_jax.cli import app
from cyclegan_jax.cli import console
from cyclegan_jax.data import image_files
from cyclegan_jax.data import labels
from cyclegan_jax.data import streets
from cyclegan_jax.data import synthetic
from cyclegan_jax.evaluation import segmentation
from cyclegan_jax.nets import segmenter as segmenter_net

FLAGS = flags.FLAGS
TASKS = ('labels_to_photo', 'photo_to_labels')
CACHE_ENV = 'CYCLEGAN_JAX_CACHE'
_FORMAT = 1  # Bump when the cached files or the training change meaning.


@dataclasses.dataclass(frozen=True)
class Settings:
  """What the segmenter is trained with (all of it goes into the cache key)."""

  size: int = 64  # Training images are resized to size x size.
  width: int = 16  # Segmenter.width.
  depth: int = 3  # Segmenter.depth.
  steps: int = 800
  batch_size: int = 8
  learning_rate: float = 2e-3
  seed: int = 0

  def check(self) -> None:
    multiple = 2**self.depth
    if self.size < multiple or self.size % multiple:
      raise ValueError(
        f'--seg_size={self.size}: must be a positive multiple of {multiple} (2**depth).'
      )
    for name in ('width', 'depth', 'steps', 'batch_size'):
      if getattr(self, name) < 1:
        raise ValueError(f'--seg_{name}={getattr(self, name)}: must be at least 1.')
    if not self.learning_rate > 0:
      raise ValueError(f'--seg_lr={self.learning_rate}: must be > 0.')


@dataclasses.dataclass(frozen=True)
class Segmenter:
  """A trained segmenter: its module, parameters, settings and where it is cached."""

  module: segmenter_net.Segmenter
  params: Any
  settings: Settings
  path: str | None = None

  def segment(self, photos: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """uint8 [N, H, W, 3] photos -> train ids uint8 [N, H, W] (any H, W)."""
    photos = np.asarray(photos)
    if photos.ndim != 4 or photos.shape[-1] != 3:
      raise ValueError(f'segment needs RGB photos [N, H, W, 3], got {photos.shape}.')
    n, h, w, _ = photos.shape
    multiple = 2**self.module.depth
    ph, pw = -h % multiple, -w % multiple
    out = np.empty((n, h, w), np.uint8)
    for start in range(0, n, batch_size):
      x = photos[start : start + batch_size].astype(np.float32) / 127.5 - 1.0
      x = np.pad(
        x,
        ((0, 0), (0, ph), (0, pw), (0, 0)),
        mode='reflect' if ph < h and pw < w else 'edge',
      )
      out[start : start + batch_size] = np.asarray(_predict(self.module, self.params, x))[
        :, :h, :w
      ]
    return out


@jax.jit
def _argmax(logits: jax.Array) -> jax.Array:
  return jnp.argmax(logits, axis=-1).astype(jnp.uint8)


def _predict(module: segmenter_net.Segmenter, params: Any, x: np.ndarray) -> jax.Array:
  return _argmax(_apply(module, params, jnp.asarray(x)))


def _apply_impl(module, params, x):
  return module.apply({'params': params}, x)


_apply = jax.jit(_apply_impl, static_argnums=0)


# --------------------------------------------------------------------------------------
# The benchmark's data.
# --------------------------------------------------------------------------------------


def _paired() -> types.ModuleType:
  """`data.paired`, imported on first use: it loads TensorFlow, whose import-time
  banner the console hides (a synthetic benchmark never needs it)."""
  console.import_tensorflow()
  return importlib.import_module('cyclegan_jax.data.paired')


def benchmark_pairs(dataset: str, phase: str, size: int) -> tuple[np.ndarray, np.ndarray]:
  """A dataset's real (photo, label) pairs: (uint8 [N, S, S, 3], train ids uint8 [N, S, S]).

  `synthetic:streets`: the exact label ids of `phase`A's scenes. `folder:PATH`: the
  pairs of PATH's aligned layout (A the photo, B the colour label map; test falls back
  to val as in training), photos resized bilinearly and label maps by nearest pixel.
  """
  if phase not in ('train', 'test'):
    raise ValueError(f"phase must be 'train' or 'test', got {phase!r}.")
  if dataset == 'synthetic:streets':
    photos, ids = streets.render_split(
      f'{phase}A', synthetic.num_examples(f'{phase}A'), size
    )
    return np.asarray(photos), streets.train_ids(ids)
  if not dataset.startswith('folder:'):
    raise ValueError(
      f'--dataset={dataset}: the FCN-score needs photos with Cityscapes label maps; '
      "use 'synthetic:streets' or 'folder:PATH' (the official cityscapes layout)."
    )
  pairs = _paired()._folder_pairs(
    os.path.expanduser(dataset[len('folder:') :]), phase, 4096
  )  # pylint: disable=protected-access
  photos = np.empty((len(pairs.names), size, size, 3), np.uint8)
  ids = np.empty((len(pairs.names), size, size), np.uint8)
  b_paths = pairs.b_paths or ('',) * len(pairs.a_paths)
  for i, (a_path, b_path) in enumerate(zip(pairs.a_paths, b_paths)):
    photo, label_map = _paired()._read_pair(a_path, b_path, 4096)  # pylint: disable=protected-access
    photos[i] = _resized(photo, size, Image.BILINEAR)
    ids[i] = labels.colors_to_train_ids(_resized(label_map, size, Image.NEAREST))
  return photos, ids


def _resized(image: np.ndarray, size: int, resample: int) -> np.ndarray:
  """`image` as size x size (unchanged if it is)."""
  if image.shape[:2] == (size, size):
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), resample))


def _fingerprint(dataset: str) -> str:
  """What identifies the training data: a version for streets, file stamps for folders."""
  if dataset == 'synthetic:streets':
    return f'streets-v{streets.VERSION}-{synthetic.num_examples("trainA")}'
  if dataset.startswith('folder:'):
    pairs = _paired()._folder_pairs(
      os.path.expanduser(dataset[len('folder:') :]), 'train', 4096
    )  # pylint: disable=protected-access
    stamps = [
      (os.path.basename(p), os.path.getsize(p), int(os.path.getmtime(p)))
      for p in pairs.a_paths + (pairs.b_paths or ())
    ]
    return hashlib.sha256(json.dumps(stamps).encode()).hexdigest()
  benchmark_pairs(dataset, 'train', 8)  # Raises the one-line error.
  return ''


# --------------------------------------------------------------------------------------
# Training and the cache.
# --------------------------------------------------------------------------------------


def cache_dir(path: str | None = None) -> str:
  """The segmenter cache: `path`, else $CYCLEGAN_JAX_CACHE/segmenters, else ~/.cache."""
  if path:
    return os.path.expanduser(path)
  root = os.environ.get(CACHE_ENV) or os.path.join('~', '.cache', 'cyclegan_jax')
  return os.path.join(os.path.expanduser(root), 'segmenters')


def cache_key(dataset: str, settings: Settings) -> str:
  """`<dataset slug>-<hash of the settings and the training data>`."""
  blob = json.dumps(
    {
      'format': _FORMAT,
      'dataset': dataset,
      'data': _fingerprint(dataset),
      **dataclasses.asdict(settings),
    },
    sort_keys=True,
  )
  slug = ''.join(c if c.isalnum() else '_' for c in dataset.split('/')[-1] or dataset)
  return f'{slug[-40:]}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}'


def train(
  photos: np.ndarray, train_ids: np.ndarray, settings: Settings, *, progress: bool = False
) -> Segmenter:
  """Trains a segmenter on uint8 photos [N, S, S, 3] and train ids [N, S, S].

  Adam with a cosine-decayed rate, softmax cross-entropy over the pixels whose id is
  in [0, 19) (IGNORE left out), batches drawn at random with random horizontal flips.
  """
  settings.check()
  if len(photos) != len(train_ids) or photos.shape[:3] != train_ids.shape:
    raise ValueError(
      f'train needs one label map per photo of its size, got {photos.shape} and '
      f'{train_ids.shape}.'
    )
  module = segmenter_net.Segmenter(
    labels.NUM_CLASSES, width=settings.width, depth=settings.depth
  )
  key = jax.random.key(settings.seed)
  params = module.init(key, jnp.zeros((1,) + photos.shape[1:3] + (3,), jnp.float32))[
    'params'
  ]
  schedule = optax.cosine_decay_schedule(settings.learning_rate, settings.steps)
  optimizer = optax.adam(schedule)
  opt_state = optimizer.init(params)

  def loss_fn(p, x, y):
    logits = module.apply({'params': p}, x)
    valid = y < labels.NUM_CLASSES
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, y, 0))
    return jnp.sum(ce * valid) / jnp.maximum(jnp.sum(valid), 1)

  @jax.jit
  def step(p, state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
    updates, state = optimizer.update(grads, state, p)
    return optax.apply_updates(p, updates), state, loss

  rng = np.random.default_rng(settings.seed)
  start = time.perf_counter()
  loss = float('nan')
  for i in range(settings.steps):
    pick = rng.integers(0, len(photos), settings.batch_size)
    x = photos[pick].astype(np.float32) / 127.5 - 1.0
    y = train_ids[pick].astype(np.int32)
    flip = rng.random(settings.batch_size) < 0.5
    x[flip], y[flip] = x[flip, :, ::-1], y[flip, :, ::-1]
    params, opt_state, loss = step(params, opt_state, x, y)
    if progress and (i + 1) % max(settings.steps // 10, 1) == 0:
      logging.info(
        'Segmenter step %d/%d: loss %.4f (%.0f s).',
        i + 1,
        settings.steps,
        float(loss),
        time.perf_counter() - start,
      )
  return Segmenter(module, jax.device_get(params), settings)


def save(model: Segmenter, directory: str, info: dict[str, Any]) -> None:
  """Writes `segmenter.msgpack` and `info.json` into `directory` (atomically each)."""
  os.makedirs(directory, exist_ok=True)
  for name, data in (
    ('segmenter.msgpack', flax.serialization.msgpack_serialize(model.params)),
    (
      'info.json',
      json.dumps(
        {'settings': dataclasses.asdict(model.settings), **info}, indent=1
      ).encode(),
    ),
  ):
    tmp = os.path.join(directory, f'.{name}.{os.getpid()}')
    with open(tmp, 'wb') as f:
      f.write(data)
    os.replace(tmp, os.path.join(directory, name))


def load(directory: str) -> Segmenter:
  """A segmenter saved by `save`."""
  with open(os.path.join(directory, 'info.json'), encoding='utf-8') as f:
    info = json.load(f)
  settings = Settings(**info['settings'])
  with open(os.path.join(directory, 'segmenter.msgpack'), 'rb') as f:
    params = flax.serialization.msgpack_restore(f.read())
  module = segmenter_net.Segmenter(
    labels.NUM_CLASSES, width=settings.width, depth=settings.depth
  )
  return Segmenter(module, params, settings, path=directory)


def load_or_train(
  dataset: str,
  settings: Settings = Settings(),
  *,
  cache: str | None = None,
  retrain: bool = False,
  progress: bool = False,
) -> Segmenter:
  """The dataset's segmenter from the cache, trained and cached first if missing."""
  settings.check()
  directory = os.path.join(cache_dir(cache), cache_key(dataset, settings))
  if not retrain and os.path.isfile(os.path.join(directory, 'segmenter.msgpack')):
    logging.info('Segmenter from %s.', directory)
    return load(directory)
  photos, ids = benchmark_pairs(dataset, 'train', settings.size)
  logging.info(
    'Training the segmenter on %d %s pairs at %d px (%d steps).',
    len(photos),
    dataset,
    settings.size,
    settings.steps,
  )
  start = time.perf_counter()
  model = train(photos, ids, settings, progress=progress)
  seconds = round(time.perf_counter() - start, 1)
  save(
    model, directory, {'dataset': dataset, 'train_pairs': len(photos), 'seconds': seconds}
  )
  return dataclasses.replace(model, path=directory)


# --------------------------------------------------------------------------------------
# Scores.
# --------------------------------------------------------------------------------------


def benchmark_classes(dataset: str) -> list[int] | None:
  """Train ids the class means average over: streets' classes, else all 19 (official)."""
  if dataset == 'synthetic:streets':
    return labels.class_index(streets.CLASSES).tolist()
  return None


def score_labels_to_photo(
  generated: np.ndarray,
  input_ids: np.ndarray,
  model: Segmenter,
  *,
  classes: Sequence[int] | None = None,
) -> dict[str, Any]:
  """Table 2's FCN-score: generated photos segmented, scored against their inputs.

  Args:
    generated: uint8 [N, h, w, 3] photos generated from the label maps.
    input_ids: train ids [N, H, W] of those label maps (IGNORE left out).
    model: the dataset's segmenter (`load_or_train`).
    classes: train ids of the class means (`benchmark_classes`; default all 19).

  The segmenter sees each photo at the size it was trained at (bilinear resize, the
  scale it learnt), and its labels are scored at the label map's size (nearest
  resize); the official evaluate.py resizes the photo to the label map, where its
  FCN was trained.
  """
  generated, input_ids = np.asarray(generated), np.asarray(input_ids)
  if len(generated) != len(input_ids):
    raise ValueError(
      f'{len(generated)} generated photos for {len(input_ids)} label maps; give one '
      'photo per label map.'
    )
  side = model.settings.size
  pred = model.segment(np.stack([_resized(g, side, Image.BILINEAR) for g in generated]))
  height, width = input_ids.shape[1:3]
  if (height, width) != (side, side):
    pred = np.stack(
      [
        np.asarray(Image.fromarray(p).resize((width, height), Image.NEAREST))
        for p in pred
      ]
    )
  return segmentation.score_label_maps(input_ids, pred, classes=classes)


def ceiling(
  dataset: str, model: Segmenter, *, classes: Sequence[int] | None = None
) -> dict[str, Any]:
  """The segmenter's scores on the real test photos: the best a generator can get."""
  photos, ids = benchmark_pairs(dataset, 'test', model.settings.size)
  return score_labels_to_photo(photos, ids, model, classes=classes)


def read_eval_images(
  folder: str, task: str, images: str = 'fake'
) -> tuple[list[str], np.ndarray, np.ndarray]:
  """(names, generated uint8 [N, H, W, 3], label ids [N, H, W]) of an eval image folder.

  labels_to_photo: `<name>_fake` photos with the ids of `<name>_real`; photo_to_labels:
  `<name>_fake` label maps with the ids of `<name>_gt`. `images='real'` reads the
  inputs `<name>_real` in place of the translations: the input-unchanged baseline.
  """
  if images not in ('fake', 'real'):
    raise ValueError(f"images must be 'fake' or 'real', got {images!r}.")
  if task not in TASKS:
    raise ValueError(f'--task={task}: must be one of {", ".join(TASKS)}.')
  if not os.path.isdir(folder):
    raise ValueError(f'--images={folder} is not a folder of evaluation images.')
  partner = '_real' if task == 'labels_to_photo' else '_gt'
  files = {
    os.path.splitext(os.path.basename(p))[0]: p for p in image_files.list_images(folder)
  }
  names = sorted(s[: -len('_fake')] for s in files if s.endswith('_fake'))
  names = [n for n in names if n + partner in files]
  if not names:
    raise ValueError(
      f'--images={folder} holds no <name>_fake with <name>{partner} images; give an '
      'evaluation folder (WORKDIR/eval/step_N/images/AtoB or BtoA)'
      + (' of a test split with ground truth.' if partner == '_gt' else '.')
    )
  fakes = np.stack([image_files.read_rgb(files[f'{n}_{images}']) for n in names])
  ids = np.stack(
    [labels.colors_to_train_ids(image_files.read_rgb(files[n + partner])) for n in names]
  ).astype(np.uint8)
  return names, fakes, ids


# --------------------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------------------


def define_flags() -> None:
  """The command's flags (defined by its entry point only)."""
  defaults = Settings()
  flags.DEFINE_string(
    'dataset', None, "'synthetic:streets' or 'folder:PATH' (official cityscapes layout)."
  )
  flags.mark_flag_as_required('dataset')
  flags.DEFINE_string(
    'images',
    None,
    'An evaluation image folder to score (WORKDIR/eval/step_N/images/DIR).',
  )
  flags.DEFINE_enum('task', 'labels_to_photo', TASKS, 'What --images holds.')
  flags.DEFINE_string(
    'cache_dir', None, f'Segmenter cache (default ${CACHE_ENV} or ~/.cache).'
  )
  flags.DEFINE_bool('retrain', False, 'Train the segmenter again even if cached.')
  flags.DEFINE_integer('seg_size', defaults.size, 'Segmenter training size (pixels).')
  flags.DEFINE_integer('seg_width', defaults.width, 'Segmenter channels at full size.')
  flags.DEFINE_integer('seg_depth', defaults.depth, 'Segmenter poolings.')
  flags.DEFINE_integer('seg_steps', defaults.steps, 'Segmenter training steps.')
  flags.DEFINE_integer('seg_batch_size', defaults.batch_size, 'Segmenter batch size.')
  flags.DEFINE_float('seg_lr', defaults.learning_rate, 'Segmenter peak learning rate.')
  flags.DEFINE_integer('seg_seed', defaults.seed, 'Segmenter initialisation and batches.')


def _rounded(result: dict[str, Any]) -> dict[str, Any]:
  """The three scores, and per-class IoU by class name, for the JSON line."""
  return {
    'pixel_acc': result['pixel_acc'],
    'class_acc': result['class_acc'],
    'class_iou': result['class_iou'],
    'per_class_iou': {
      name: float(v) for name, v in zip(labels.CLASS_NAMES, result['per_class_iou'])
    },
  }


def run(
  dataset: str,
  *,
  images: str | None = None,
  task: str = 'labels_to_photo',
  settings: Settings = Settings(),
  cache: str | None = None,
  retrain: bool = False,
) -> dict[str, Any]:
  """The command's result: the ceiling and, with `images`, their scores."""
  if task not in TASKS:
    raise ValueError(f'--task={task}: must be one of {", ".join(TASKS)}.')
  classes = benchmark_classes(dataset) if dataset else None
  result: dict[str, Any] = {'dataset': dataset, 'task': task}
  if images and task == 'photo_to_labels':
    names, fakes, ids = read_eval_images(images, task)
    result['images'] = len(names)
    result['scores'] = _rounded(
      segmentation.score_photo_to_labels(fakes, ids, classes=classes)
    )
    return result
  model = load_or_train(dataset, settings, cache=cache, retrain=retrain, progress=True)
  result['segmenter'] = model.path
  result['ceiling'] = _rounded(ceiling(dataset, model, classes=classes))
  if images:
    names, fakes, ids = read_eval_images(images, task)
    result['images'] = len(names)
    result['scores'] = _rounded(score_labels_to_photo(fakes, ids, model, classes=classes))
    real = _real_photos(images, names)
    if real is not None:  # The ceiling on these very scenes, at this size.
      result['ceiling_images'] = _rounded(
        score_labels_to_photo(real, ids, model, classes=classes)
      )
  return result


def _real_photos(folder: str, names: Sequence[str]) -> np.ndarray | None:
  """The `<name>_gt` photos of a labels→photo eval folder, or None if one is missing."""
  paths = [os.path.join(folder, f'{n}_gt.png') for n in names]
  if not all(os.path.isfile(p) for p in paths):
    return None
  return np.stack([image_files.read_rgb(p) for p in paths])


def result_line(result: dict[str, Any]) -> str:
  def three(s):
    return (
      f'per-pixel acc {s["pixel_acc"]:.3f}, per-class acc {s["class_acc"]:.3f}, '
      f'class IoU {s["class_iou"]:.3f}'
    )

  parts = []
  if 'scores' in result:
    what = 'FCN-score' if result['task'] == 'labels_to_photo' else 'Photo→labels'
    parts.append(f'{what} of {result["images"]} images: {three(result["scores"])}')
  if 'ceiling_images' in result:
    parts.append(f'their real photos: {three(result["ceiling_images"])}')
  if 'ceiling' in result:
    parts.append(f'ceiling (real test photos): {three(result["ceiling"])}')
  text = '; '.join(parts)
  return text[:1].upper() + text[1:] + '.'


def main(argv: Sequence[str]) -> app.Outcome:
  app.no_arguments(argv)
  settings = Settings(
    size=FLAGS.seg_size,
    width=FLAGS.seg_width,
    depth=FLAGS.seg_depth,
    steps=FLAGS.seg_steps,
    batch_size=FLAGS.seg_batch_size,
    learning_rate=FLAGS.seg_lr,
    seed=FLAGS.seg_seed,
  )
  result = run(
    FLAGS.dataset,
    images=FLAGS.images,
    task=FLAGS.task,
    settings=settings,
    cache=FLAGS.cache_dir,
    retrain=FLAGS.retrain,
  )
  return app.Outcome(result_line(result), {'command': 'fcn_score', **result})


def cli() -> None:
  """`cyclegan-jax-fcn-score` and `python -m cyclegan_jax.evaluation.fcn_score`."""
  app.run(main, prog='fcn_score', define_flags=define_flags)


if __name__ == '__main__':
  cli()
