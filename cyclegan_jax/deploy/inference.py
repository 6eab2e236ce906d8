"""Generators restored for inference, shared by `evaluate` and `translate`.

Loads only the parameters and config of a checkpoint (no optimiser state) onto one
device, rebuilds the generators that the *checkpoint's* config describes (its method's,
`config.method`; CycleGAN for checkpoints saved before it), checks that the
parameters fit it (naming the config field when they do not), and groups images of one
size into batches so that each size compiles once.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from absl import logging
from etils import epath
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image

from cyclegan_jax import methods
from cyclegan_jax.cli import config_checks
from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.methods import base
from cyclegan_jax.methods import step_parts
from cyclegan_jax.nets import models
from cyclegan_jax.nets import spec
from cyclegan_jax.train import checkpoints

PyTree = Any
T = TypeVar('T')
# The config fields that decide the generator's parameters (dtype only its compute).
GENERATOR_FIELDS = ('netG', 'ngf')
# Generator fields that configs saved before them lack: spec.generator_layout's default.
LAYOUT_FIELDS = ('upsample', 'downsample', 'head')
MODEL_FIELDS = ('netG', 'ngf', 'netD', 'ndf', 'n_layers_D', 'dtype') + LAYOUT_FIELDS
# The fields that also decide what the data is: a mismatch is an error, not a note.
CHANNEL_FIELDS = ('input_nc', 'output_nc')
DIRECTIONS = base.DIRECTIONS  # Those a method may translate (`Method.directions`).


class ArchitectureMismatchError(ValueError):
  """The checkpoint's parameters do not fit the networks its config describes."""


@dataclasses.dataclass(frozen=True)
class Restored:
  """A checkpoint restored for inference.

  Attributes:
    method: the method the checkpoint was trained with.
    modules: every generator module of the method, by name, as the checkpoint's config
      describes it.
    params: the restored generators' parameters on one device, by name.
    model_config: the checkpoint's `model` fields, as used.
    step: the checkpoint's step.
    workdir: where it came from (for messages).
    weights: 'ema' (the generators' moving average) or 'raw' (the trained weights).
  """

  method: base.Method
  modules: dict[str, models.ResnetGenerator]
  params: dict[str, PyTree]
  model_config: ml_collections.ConfigDict
  step: int
  workdir: str
  weights: str = 'raw'
  # The restored generators' batch-norm running statistics, by name ({}: none).
  batch_stats: dict[str, PyTree] = dataclasses.field(default_factory=dict)
  # The config saved with the checkpoint (a method's own translation reads its
  # settings from it where the command has no config of its own).
  config: dict[str, Any] = dataclasses.field(default_factory=dict)

  def stats_for(self, name: str) -> PyTree:
    """Generator `name`'s running statistics ({} for one without batch norm)."""
    return self.batch_stats.get(name, {})

  @property
  def generator(self) -> models.ResnetGenerator:
    """The module of the method's first direction (A→B where it has one)."""
    return self.modules[next(iter(self.method.directions.values()))[0]]

  def generator_for(self, name: str) -> models.ResnetGenerator:
    """The module of generator `name`."""
    return self.modules[name]

  def input_channels(self, name: str) -> int:
    """Channels of the images generator `name` reads (its source domain's)."""
    domain = self.method.source_domain(name)
    return channels_lib.domain_channels(self.model_config)[domain]


def check_channels(
  saved: dict[str, int], requested: ml_collections.ConfigDict | None, where: str
) -> None:
  """Raises ArchitectureMismatchError when the config's channels are not the model's.

  The data pipeline reads each domain with the config's channels, so the checkpoint
  cannot win here as it does for the other model fields.
  """
  if requested is None:
    return
  wanted = channels_lib.domain_channels(requested)
  for field, domain in zip(CHANNEL_FIELDS, 'AB'):
    if wanted[domain] != saved[domain]:
      raise ArchitectureMismatchError(
        f'The checkpoint in {where} was trained with model.{field}={saved[domain]}, '
        f'this config has {wanted[domain]}: pass --config.model.{field}='
        f'{saved[domain]} (or train a {wanted[domain]}-channel model).'
      )


def model_config_for(
  checkpoint_config: dict[str, Any],
  requested: ml_collections.ConfigDict | None = None,
  where: str = 'the workdir',
) -> ml_collections.ConfigDict:
  """The checkpoint's model fields; logs those where the command line's differ.

  The networks must be the ones that were trained, so the checkpoint wins; a differing
  command-line value is almost always a default the user did not mean to set.
  """
  saved = dict(checkpoint_config.get('model') or {})
  # Only the networks matter here: removed loss fields of old runs change no weights.
  gone = config_checks.removed({'model': saved})
  if gone is not None:
    field, value, advice = gone
    raise ArchitectureMismatchError(
      f'The checkpoint in {where} was trained with {field}={value!r}, which was '
      f'removed ({advice}); this version cannot rebuild its generators.'
    )
  model = ml_collections.ConfigDict(saved)
  check_channels(channels_lib.domain_channels(model), requested, where)
  if requested is not None:
    for field in MODEL_FIELDS:
      if field in requested and field in saved and requested[field] != saved[field]:
        logging.warning(
          'model.%s: the command line says %r, the checkpoint %r; using the '
          "checkpoint's (the parameters were trained for it).",
          field,
          requested[field],
          saved[field],
        )
  for field in GENERATOR_FIELDS + ('dtype',):
    if field not in model:
      if requested is None or field not in requested:
        raise ArchitectureMismatchError(
          f'The checkpoint config has no model.{field}; pass the config it was '
          'trained with (--config=...).'
        )
      model[field] = requested[field]
  return model


def _kernel_shape(params: PyTree, *path: str) -> tuple[int, ...] | None:
  for key in path + ('kernel',):
    params = params.get(key) if isinstance(params, dict) else None
  return tuple(params.shape) if params is not None else None


def upsample_of(params: PyTree) -> str | None:
  """The upsampling layout of a generator's parameters (None: not one of them).

  `up_0/conv/kernel` against the stem's ngf: transpose (3, 3, 2·ngf, 4·ngf), stored
  (out, in); resize_conv (3, 3, 4·ngf, 2·ngf); 'blur' (CUT's) has its conv at
  `up_0/kernel`. The downsampling layout has no parameters of
  its own, so only the saved config tells it.
  """
  if _kernel_shape(params, 'stem') is not None and _kernel_shape(params, 'up_0'):
    return 'blur'
  stem, up = _kernel_shape(params, 'stem'), _kernel_shape(params, 'up_0', 'conv')
  if stem is None or up is None or len(up) != 4:
    return None
  ngf = stem[-1]
  layouts = {
    (2 * ngf, 4 * ngf): 'transpose',
    (4 * ngf, 2 * ngf): 'resize_conv',
  }
  return layouts.get(tuple(up[2:]))


def _describe_generator(params: PyTree) -> dict[str, Any]:
  """netG, ngf and upsample as read from a generator's parameters (None: unknown)."""
  found: dict[str, Any] = {'netG': None, 'ngf': None, 'upsample': None}
  is_dict = isinstance(params, dict)
  unet = is_dict and 'stem' not in params  # A ResNet's stages are stem, down_i, ...
  downs = sum(1 for k in params if re.fullmatch(r'down_\d+', str(k))) if unet else 0
  if downs:  # A U-Net.
    found['ngf'] = (_kernel_shape(params, 'down_0') or (None,))[-1]
    names = {n: k for k, n in spec.UNET_DOWNS.items()}
    found['netG'] = names.get(downs, f'a U-Net of {downs} downsamplings')
  elif is_dict:
    stem = _kernel_shape(params, 'stem')
    if stem is not None:
      found['ngf'] = int(stem[-1])
    blocks = sum(1 for k in params if re.fullmatch(r'block_\d+', str(k)))
    found['netG'] = spec.net_g_name(blocks) or f'{blocks} residual blocks'
    found['upsample'] = upsample_of(params)
  return found


def check_generator_fits(
  generator: models.ResnetGenerator,
  params: PyTree,
  *,
  name: str,
  model_config: ml_collections.ConfigDict,
  where: str,
  domain: str = 'A',
) -> None:
  """Raises ArchitectureMismatchError, naming the config field, if `params` do not fit.

  `domain` is the one generator `name` reads ('A' or 'B').
  """
  in_channels = channels_lib.domain_channels(model_config)[domain]
  size = 2 ** getattr(generator, 'num_downs', 4)  # A U-Net's smallest input.
  # A generator that reads no image (CoGAN's reads noise) says what it reads.
  example = getattr(generator, 'example_input', None)
  expected = jax.eval_shape(
    lambda: generator.init(
      jax.random.key(0),
      example() if example else jnp.zeros((1, size, size, in_channels)),
    )['params']
  )
  want, got = checkpoints.shapes_by_path(expected), checkpoints.shapes_by_path(params)
  if want == got:
    return
  # Only image-to-image generators are described by model.netG / ngf / upsample.
  found = dict.fromkeys(GENERATOR_FIELDS + ('upsample',)) if example else None
  found = found or _describe_generator(params)
  configured = {**spec.generator_layout(model_config), **model_config}
  fields = [
    f'model.{f}={configured[f]!r} (its {name} parameters have {f}={found[f]!r})'
    for f in GENERATOR_FIELDS + ('upsample',)
    if found[f] is not None and found[f] != configured[f]
  ]
  if not fields:
    differing = sorted(set(want) ^ set(got)) or sorted(
      k for k in want if want[k] != got.get(k)
    )
    fields = [f'parameters {", ".join(differing[:4])} differ in name or shape']
  raise ArchitectureMismatchError(
    f'The checkpoint in {where} does not fit its config: {"; ".join(fields)}. The '
    'config saved with the parameters is wrong; fix that field in it, or re-convert '
    'the weights with `python -m cyclegan_jax.deploy.convert`.'
  )


def restore(
  workdir: str,
  step: int | None = None,
  *,
  requested_model: ml_collections.ConfigDict | None = None,
  generators: Sequence[str] | None = None,
  direction: str | None = None,
  sharding: jax.sharding.Sharding | None = None,
  step_flag: str = '--step',
  weights: str = 'auto',
) -> Restored:
  """Restores the generators of a workdir's checkpoint onto one device.

  Args:
    workdir: a training workdir or one written by `cyclegan_jax.deploy.convert`.
    step: the step; None or negative for the latest.
    requested_model: the command line's `config.model`, only to log how it differs.
    generators: the generators wanted, the only arrays read; absent ones are left out
      (the caller decides whether that is an error). None: all of the method's.
    direction: instead of `generators`, only the generator of this direction ('AtoB'
      or 'BtoA'); a direction the checkpoint's method does not translate is an error.
    sharding: where the arrays go (default: the first local device).
    step_flag: the flag that picks a step, named when the step is damaged.
    weights: 'auto' (the weight average where the run kept one, else the trained
      weights), 'ema' (the average; an error without one) or 'raw'.

  Returns:
    The generator module, its parameters and the checkpoint's model config.

  Raises:
    FileNotFoundError: no checkpoint, or no such step (the message lists the steps).
    checkpoints.DamagedCheckpointError: the generators' files of that step cannot be
      read (the message lists the steps where they can).
    ArchitectureMismatchError: the parameters do not fit the checkpoint's config.
    ValueError: weights='ema' for a checkpoint without a weight average, or a
      `direction` the method does not translate.
  """
  step = None if step is None or step < 0 else step
  item = checkpoints.weights_item(workdir, step, weights)
  method = checkpoint_method(workdir, step)
  if direction is not None:
    generators = (method.generator_for(direction),)
  params, config_dict, step = checkpoints.restore_params(
    workdir,
    step,
    names=tuple(method.generators if generators is None else generators),
    sharding=sharding,
    step_flag=step_flag,
    item=item,
  )
  used = 'ema' if item == checkpoints.EMA else 'raw'
  where = f'{checkpoints.checkpoint_dir(workdir)}/{step}'
  model_config = model_config_for(config_dict, requested_model, where)
  method = methods.of_config(config_dict)
  stats = {}
  if checkpoints.step_has_item(workdir, step, checkpoints.BATCH_STATS):
    stats, _, _ = checkpoints.restore_params(
      workdir,
      step,
      names=tuple(params),
      sharding=sharding,
      step_flag=step_flag,
      item=checkpoints.BATCH_STATS,
    )
  try:
    modules = method.generator_modules(model_config)
  except ValueError as e:
    raise ArchitectureMismatchError(f'Checkpoint {workdir} step {step}: {e}') from None
  kept = {k: params[k] for k in modules if k in params}
  for name, tree in kept.items():
    check_generator_fits(
      modules[name],
      tree,
      name=name,
      model_config=model_config,
      where=where,
      domain=method.source_domain(name),
    )
  if method.translate_fn is not None:  # Its networks are not model.netG's (CoGAN's).
    logging.info(
      'Restored %s (%s weights) of step %d from %s (method=%s).',
      sorted(kept),
      used,
      step,
      where,
      method.name,
    )
  else:
    _log_generator(sorted(kept), used, step, where, model_config)
  return Restored(
    method=method,
    modules=modules,
    params=kept,
    model_config=model_config,
    step=step,
    workdir=workdir,
    weights=used,
    batch_stats={k: v for k, v in stats.items() if k in kept},
    config=dict(config_dict or {}),
  )


def _log_generator(
  kept: list[str], used: str, step: int, where: str, model_config: Any
) -> None:
  """The restore line of an image-to-image generator: its layout and conv forms."""
  logging.info(
    'Restored %s (%s weights) of step %d from %s (netG=%s, ngf=%d, %s, conv_impl=%s).',
    kept,
    used,
    step,
    where,
    model_config.netG,
    model_config.ngf,
    'U-Net layout'
    if spec.is_unet(model_config.netG)
    else ', '.join(f'{k}={v}' for k, v in spec.generator_layout(model_config).items()),
    'xla'
    if spec.is_unet(model_config.netG)
    else models.conv_impl_from_config(model_config),
  )


def checkpoint_method(workdir: str, step: int | None = None) -> base.Method:
  """The method checkpoint `step` (None: the latest) of `workdir` was trained with.

  Raises:
    FileNotFoundError: no checkpoint, or no such step.
    ValueError: the checkpoint names a method this code does not know.
  """
  manager = checkpoints.create_manager(workdir, create=False, partial_params=True)
  try:
    step = checkpoints.resolve_step(manager, workdir, step)
    try:
      saved = checkpoints.saved_config(manager, step)
    except Exception:  # pylint: disable=broad-except  # Damaged: restoring says so.
      saved = {}
  finally:
    manager.close()
  return methods.of_config(saved or {})


@dataclasses.dataclass(frozen=True)
class TestMode:
  """How a generator with batch norm or dropout runs at test time.

  `model_eval=False` is the official test.py's default (it never calls `eval()`, and
  runs one image per batch): each image normalised with its own statistics, dropout
  on, its masks drawn from `seed` and the image itself (so a rerun, or the image in
  another batch, gives the same output). `model_eval=True` is its `--eval`: the running
  statistics, no dropout. A generator with neither (CycleGAN's) has one mode.
  """

  model_eval: bool = False
  seed: int = 0

  def describe(self) -> str:
    """One line for the records next to the outputs."""
    if self.model_eval:
      return 'model_eval: running batch-norm statistics, no dropout (official --eval)'
    return (
      'train-mode: batch-norm statistics of each test image, dropout on with seed '
      f'{self.seed} (official test.py default)'
    )


DEFAULT_MODE = TestMode()


def is_stateful(generator: Any, stats: PyTree) -> bool:
  """Whether the two test modes differ for this generator (batch norm or dropout)."""
  return bool(jax.tree.leaves(stats)) or bool(getattr(generator, 'use_dropout', False))


def image_key(seed: int, image: jax.Array) -> jax.Array:
  """A dropout key from `seed` and the image's 8-bit pixels, in exact integer
  arithmetic: the same image gets the same masks alone, in any batch, on any rerun."""
  q = jnp.round((image.astype(jnp.float32) + 1.0) * 127.5).astype(jnp.uint32).ravel()
  weights = jnp.arange(q.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + 1
  return jax.random.fold_in(jax.random.key(seed), jnp.sum(q * weights))


def size_multiple(generator: Any) -> int:
  """The multiple a generator's input sides must be (a U-Net's 2**num_downs; else 1)."""
  return 2 ** getattr(generator, 'num_downs', 0)


def pad_to_multiple(images: jax.Array, multiple: int) -> tuple[jax.Array, tuple]:
  """[N, H, W, C] reflect-padded after the last row and column so that H and W divide
  by `multiple` (as export's artifacts pad), and the slices that crop the output back."""
  h, w = images.shape[1:3]
  pads = [(-n % multiple) for n in (h, w)]
  if not any(pads):
    return images, (slice(None), slice(None))
  padded = jnp.pad(images, ((0, 0), (0, pads[0]), (0, pads[1]), (0, 0)), mode='reflect')
  return padded, (slice(0, h), slice(0, w))


_padding_logged = False


def _log_padding(generator: Any, shape: tuple[int, ...]) -> None:
  """Says once per process that inputs are padded for the generator, and why."""
  global _padding_logged
  multiple = size_multiple(generator)
  if _padding_logged:
    return
  _padding_logged = True
  logging.info(
    'Images such as %dx%d are reflect-padded to multiples of %d for the U-Net (%d '
    'downsamplings) and its output cropped back to their size.',
    shape[2],
    shape[1],
    multiple,
    generator.num_downs,
  )


def test_apply(
  generator: Any,
  params: PyTree,
  stats: PyTree,
  images: jax.Array,
  mode: TestMode = DEFAULT_MODE,
) -> jax.Array:
  """The generator on [N, H, W, C] images in `mode` (see `TestMode`), at any size: a
  U-Net's input is reflect-padded to its multiple and the output cropped back."""
  multiple = size_multiple(generator)
  if multiple > 1 and any(n % multiple for n in images.shape[1:3]):
    _log_padding(generator, images.shape)
    padded, (rows, cols) = pad_to_multiple(images, multiple)
    return test_apply(generator, params, stats, padded, mode)[:, rows, cols]
  if mode.model_eval or not is_stateful(generator, stats):
    return step_parts.apply_net(generator, params, stats, images, batch_statistics=False)[
      0
    ]
  dropout = bool(getattr(generator, 'use_dropout', False))

  def one(image: jax.Array) -> jax.Array:
    return step_parts.apply_net(
      generator,
      params,
      stats,
      image[None],
      batch_statistics=True,
      dropout_key=image_key(mode.seed, image) if dropout else None,
    )[0][0]

  return jax.vmap(one)(images)


def generator_fn(
  generator: Any, mode: TestMode = DEFAULT_MODE
) -> Callable[..., jax.Array]:
  """The jitted generator, (params, [N, H, W, C] in [-1, 1], batch_stats={}) ->
  [N, H, W, C_out], in test `mode` where it has batch norm or dropout.

  The one way samples, evaluation and translation apply a generator; inside another
  jitted function it is inlined.
  """
  run = jax.jit(
    lambda params, images, stats: test_apply(generator, params, stats, images, mode)
  )
  return lambda params, images, stats=None: run(params, images, stats or {})


def direction_fn(
  method: base.Method,
  modules: dict[str, Any],
  direction: str,
  mode: TestMode = DEFAULT_MODE,
  config: Any = None,
) -> Callable[..., jax.Array]:
  """The jitted translation of `direction`, (params of its generator, [N, H, W, C] in
  [-1, 1], batch_stats=None) -> translations: the method's `translate_fn` where it has
  one (its settings read from `config`), else its generator's forward pass."""
  if method.translate_fn is not None:
    return method.translate_fn(modules, direction, mode, config or {})
  return generator_fn(modules[method.generator_for(direction)], mode)


def missing_generator_message(restored: Restored, name: str, direction: str) -> str:
  """Why `direction` cannot run, and what to do about it."""
  hint = restored.method.missing_hint(name, direction)
  return (
    f'The checkpoint in {restored.workdir} (step {restored.step}) has no {name}, '
    f'the {direction} generator; it holds {sorted(restored.params) or "none"}. '
    f'{hint[:1].upper()}{hint[1:]}.'
  )


# --- Batching -------------------------------------------------------------------------


def batches_by_shape(
  items: Iterable[T], shape_of: Callable[[T], tuple[int, ...]], batch_size: int
) -> Iterator[list[T]]:
  """Groups items of one shape into lists of up to `batch_size`, keeping first-seen order.

  A group is yielded when full; the partial groups come at the end.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}.')
  open_groups: dict[tuple[int, ...], list[T]] = {}
  for item in items:
    group = open_groups.setdefault(tuple(shape_of(item)), [])
    group.append(item)
    if len(group) == batch_size:
      yield open_groups.pop(tuple(shape_of(item)))
  yield from open_groups.values()


def bucket_size(count: int, batch_size: int) -> int:
  """The batch a group of `count` same-size images is padded to.

  A power of two up to `batch_size`: a size compiles at most log2(batch_size) + 1
  programs (usually one), and a lone image of a size is not run 8 times over.
  """
  size = 1
  while size < min(count, batch_size):
    size *= 2
  return min(size, batch_size)


def padded_batch(images: Sequence[np.ndarray], size: int) -> np.ndarray:
  """Stacks images and repeats the last up to `size`, so a short batch reuses the
  compiled full-batch program (InstanceNorm is per image: the copies change nothing)."""
  batch = np.stack(images)
  if len(images) < size:
    batch = np.concatenate([batch, np.repeat(batch[-1:], size - len(images), axis=0)])
  return batch


def to_uint8(images: np.ndarray | jax.Array) -> np.ndarray:
  """[-1, 1] floats to uint8 (rounded, clipped)."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(
    np.uint8
  )


def from_uint8(image: np.ndarray) -> np.ndarray:
  """uint8 [H, W, C] to float32 in [-1, 1], as the input pipeline scales."""
  return image.astype(np.float32) / 127.5 - 1.0


def save_png(path: str, image: np.ndarray) -> None:
  """Writes a uint8 [H, W, 3 | 1] image as PNG (local paths or gs://...)."""
  buffer = io.BytesIO()
  to_pil(image).save(buffer, format='PNG')
  epath.Path(path).write_bytes(buffer.getvalue())


def to_pil(image: np.ndarray) -> Image.Image:
  """uint8 [H, W, 3] as an RGB image, [H, W, 1] as a 1-channel ('L') one."""
  return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def makedirs(path: str) -> None:
  """`mkdir -p` for local paths and gs://... (a pod's shared workdir)."""
  epath.Path(path).mkdir(parents=True, exist_ok=True)


def display_path(path: str) -> str:
  """Local paths made absolute; gs://... kept as they are."""
  return path if '://' in path else os.path.abspath(path)
