"""The training loop: data in, the step (step.py) run, logs, samples, checkpoints out.

`train_and_evaluate` builds the input pipeline, the networks and the state of the method
`config.method` names, resumes from the newest checkpoint in `workdir`, runs the sharded
step of `step.py`, writes metrics and sample grids with clu's writers, and saves Orbax
checkpoints (also on preemption).
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import time
from typing import Any, Callable

from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
import jax
import ml_collections
import numpy as np

from cyclegan_jax import methods
from cyclegan_jax.cli import config_checks
from cyclegan_jax.cli import errors
from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.data import input_pipeline
from cyclegan_jax.deploy import inference
from cyclegan_jax.methods import base
from cyclegan_jax.methods import step_parts
from cyclegan_jax.train import checkpoints
from cyclegan_jax.train import step as step_lib
from cyclegan_jax.train import workdir_lock

PyTree = Any


# --------------------------------------------------------------------------------------
# Inference helpers used for sample grids
# --------------------------------------------------------------------------------------


def make_translate_fn(
  method: base.Method,
  modules: dict[str, Any],
  mode: inference.TestMode = inference.DEFAULT_MODE,
  config: ml_collections.ConfigDict | None = None,
) -> Callable[..., dict[str, jax.Array]]:
  """A jitted function: each of the method's directions and, where it maps back, the
  reconstruction; (generator params, {'real_A'?, 'real_B'?}, batch_stats by name or
  None) -> {'fake_B', 'rec_A', ...}.

  `modules` are the method's generator modules by name (`generator_modules`); those
  with batch norm or dropout run in test `mode`. A method with its own translation
  (`translate_fn`) reads its settings from `config`.
  """
  forward_fns = {
    direction: inference.direction_fn(method, modules, direction, mode, config)
    for direction in method.directions
  }
  apply = {name: inference.generator_fn(module, mode) for name, module in modules.items()}

  @jax.jit
  def translate(
    g_params: dict[str, PyTree],
    reals: dict[str, jax.Array],
    g_stats: dict[str, PyTree] | None = None,
  ):
    stats = lambda name: (g_stats or {}).get(name)
    out = {}
    for direction, (forward, backward) in method.directions.items():
      source, target = direction[0], direction[-1]
      fake = forward_fns[direction](
        g_params[forward], reals[f'real_{source}'], stats(forward)
      )
      out[f'fake_{target}'] = fake
      if backward:
        out[f'rec_{source}'] = apply[backward](g_params[backward], fake, stats(backward))
    return out

  return translate


def sample_columns(method: base.Method, paired: bool = False) -> tuple[str, ...]:
  """The sample grid's columns: per direction the real image, its translation and,
  where the method maps back, the reconstruction (CycleGAN: A, G(A), F(G(A)), B, ...);
  on `paired` data a one-way direction also shows the true target (pix2pix's real_A,
  fake_B, real_B)."""
  columns = []
  for direction, (_, backward) in method.directions.items():
    source, target = direction[0], direction[-1]
    columns += [f'real_{source}', f'fake_{target}']
    if backward:
      columns.append(f'rec_{source}')
    elif paired:
      columns.append(f'real_{target}')
  return tuple(columns)


def sample_grid(
  images: dict[str, np.ndarray], columns: tuple[str, ...] | None = None
) -> np.ndarray:
  """The `columns` of `images` (default: all, in order) as one [H', W', 3] image in
  [0, 1], a row per image.

  1-channel images (a grayscale domain) are shown as gray RGB. A domain with fewer
  test images than the other has black tiles below its own.
  """
  columns = [channels_lib.to_channels(images[k], 3) for k in columns or images]
  rows = max(len(c) for c in columns)
  tile = next(c.shape[1:] for c in columns if len(c))
  blank = lambda n: np.full((n, *tile), -1.0, np.float32)
  columns = [np.concatenate([c, blank(rows - len(c))]) for c in columns]
  grid = np.concatenate([np.concatenate(list(c), axis=0) for c in columns], axis=1)
  return np.clip((grid + 1.0) / 2.0, 0.0, 1.0)


def _any_images(samples: dict[str, np.ndarray]) -> bool:
  """False when neither test split has an image (sample grids are skipped, as logged)."""
  return any(len(v) for v in samples.values())


def _local_value(x: jax.Array) -> np.ndarray:
  """A replicated global array's value, readable on every process."""
  return np.asarray(x.addressable_shards[0].data)


# --------------------------------------------------------------------------------------
# Host side: batches, checkpoints, the loop
# --------------------------------------------------------------------------------------


def save_checkpoint(
  manager,
  state: base.State,
  config: ml_collections.ConfigDict,
  *,
  force: bool = False,
) -> None:
  step = int(_local_value(state.step))
  method = methods.get(methods.name_of(config))
  checkpoints.save(
    manager,
    step,
    params=state.params,
    config=config.to_dict(),
    # Fields an option leaves empty are left out: checkpoints without it stay as they were.
    state=step_lib.replicated_items(state, method),
    per_device=step_lib.per_device_items(state, method),
    ema=state.ema or None,
    batch_stats=step_lib.stored_batch_stats(state) or None,
    force=force,
  )


def restore_checkpoint(
  manager, state: base.State, step: int, method: base.Method
) -> base.State:
  """Restores a training checkpoint into `state`'s (of `method`) structure and shardings.

  The per-device image pools and keys only fit the device count that wrote them; with
  another count they start afresh (the pool is a history of recent fakes, so nothing
  of value is lost) and this is logged.
  """
  abstract = lambda tree: jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree
  )
  per_device = step_lib.per_device_items(state, method)
  same_devices = checkpoints.per_device_shapes(
    manager, step
  ) == checkpoints.shapes_by_path(per_device)
  # A run with EMA on may resume one that had it off (or predates it).
  ema_saved = bool(state.ema) and checkpoints.has_item(manager, step, checkpoints.EMA)
  stats = step_lib.stored_batch_stats(state)
  restored = checkpoints.restore_train(
    manager,
    step,
    params=abstract(state.params),
    state=abstract(step_lib.replicated_items(state, method)),
    per_device=abstract(per_device) if same_devices else None,
    ema=abstract(state.ema) if ema_saved else None,
    batch_stats=abstract(stats) if stats else None,
  )
  state = state.replace(params=restored['params'], **restored['state'])
  if stats:
    state = state.replace(
      batch_stats={**state.batch_stats, **restored[checkpoints.BATCH_STATS]}
    )
  if ema_saved:
    state = state.replace(ema=restored[checkpoints.EMA])
  elif state.ema:
    state = state.replace(ema=_copy_generators(state.params, method.generators))
    logging.warning(
      'Checkpoint %d has no weight average (ema): it starts from the generators '
      'restored.',
      step,
    )
  if same_devices:
    state = state.replace(**restored['per_device'])
  else:
    logging.warning(
      'Checkpoint %d was written with another device count (or image history '
      'size); its image pools, histories and per-device keys start afresh.',
      step,
    )
  return state


@functools.partial(jax.jit, static_argnames='names')
def _copy_generators(
  params: dict[str, PyTree], names: tuple[str, ...]
) -> dict[str, PyTree]:
  return step_parts.initial_ema(params, names)


SAMPLES_DIR = 'samples'


def _save_sample_png(workdir: str, step: int, grid: np.ndarray) -> None:
  """The sample grid as workdir/samples/step_<N>.png too, to look at without TensorBoard."""
  if jax.process_index() == 0:
    directory = epath.Path(workdir) / SAMPLES_DIR
    directory.mkdir(parents=True, exist_ok=True)
    image = np.round(grid * 255.0).astype(np.uint8)
    inference.save_png(str(directory / f'step_{step}.png'), image)


# The model fields that decide the networks (or the critics' state's shapes); dtype
# only the compute.
SHAPE_FIELDS = (
  'netG',
  'ngf',
  'norm',
  'netD',
  'ndf',
  'n_layers_D',
  'spectral_norm_D',
  'norm_D',
  'upsample',
  'downsample',
  'head',
  'input_nc',
  'output_nc',
)
# What checkpoints written before a field existed were trained with.
_ABSENT_FIELDS = {
  'norm': 'instance',
  'spectral_norm_D': False,
  'norm_D': 'instance',
  'upsample': 'transpose',
  'downsample': 'stride',
  'head': 'tanh',
}
DAMAGED_DIR = 'checkpoints_damaged'


class NetworkMismatchError(ValueError):
  """The checkpoint holds other networks than the config describes."""


def check_same_networks(
  manager,
  step: int,
  config: ml_collections.ConfigDict,
  state: base.State,
  workdir: str,
) -> None:
  """Raises ValueError naming the field when the checkpoint holds other networks.

  Reads only the checkpoint's config and metadata, so a mismatch is told apart from
  damage before any array is read.
  """
  saved_config = checkpoints.saved_config(manager, step)
  saved = saved_config.get('model') or {}
  # Checkpoints written before the channel fields existed are RGB in both domains.
  saved = {'input_nc': 3, 'output_nc': 3, **saved}
  where = f'the checkpoint (step {step} in {checkpoints.checkpoint_dir(workdir)})'
  trained, asked = methods.name_of(saved_config), methods.name_of(config)
  if trained != asked:
    raise NetworkMismatchError(
      f'method: the command line says {asked!r} but {where} was trained with '
      f'{trained!r}; pass --config.method={trained} to resume, or train in another '
      '--workdir.'
    )
  trained_ways = set(methods.of_config(saved_config).directions)
  asked_ways = set(methods.of_config(config).directions)
  if trained_ways != asked_ways:
    raise NetworkMismatchError(
      f'direction: the command line says {config.direction!r} but {where} was '
      f'trained {", ".join(sorted(trained_ways))}; pass --config.direction='
      f'{min(trained_ways)} to resume, or train in another --workdir.'
    )
  for field in SHAPE_FIELDS:
    if field == 'n_layers_D' and config.model.netD != 'n_layers':
      continue
    if field not in saved and field not in _ABSENT_FIELDS:
      continue
    trained = saved.get(field, _ABSENT_FIELDS.get(field))
    if trained != config.model[field]:
      raise NetworkMismatchError(
        f'model.{field}: the command line says {config.model[field]!r} but {where} was '
        f'trained with {trained!r}; drop the override to resume, or train in '
        'another --workdir.'
      )
  metadata = manager.item_metadata(step)['params']
  want = checkpoints.shapes_by_path(state.params)
  got = checkpoints.shapes_by_path(getattr(metadata, 'tree', metadata))
  if want != got:
    differing = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    raise NetworkMismatchError(
      f"The networks of {where} differ from the config's (parameters "
      f'{", ".join(differing[:3])}); resume with the config it was trained with, or '
      'train in another --workdir.'
    )


def _set_aside(workdir: str, step: int) -> str:
  """Moves a damaged step out of the manager's sight (kept, never deleted)."""
  source = epath.Path(checkpoints.checkpoint_dir(workdir)) / str(step)
  target_dir = epath.Path(checkpoints.checkpoint_dir(workdir)).parent / DAMAGED_DIR
  target_dir.mkdir(parents=True, exist_ok=True)
  target = target_dir / str(step)
  if target.exists():
    target = target_dir / f'{step}.{int(time.time())}'
  source.rename(target)
  return str(target)


def resume(manager, state: base.State, config: ml_collections.ConfigDict, workdir: str):
  """Restores the newest intact checkpoint; sets damaged newer steps aside.

  Returns:
    (state, the restored step or None, the manager to go on with).

  Raises:
    ValueError: the checkpoint holds other networks than the config describes, or no
      step is intact.
  """
  method = methods.get(methods.name_of(config))
  steps = sorted(manager.all_steps(), reverse=True)
  damaged: dict[int, str] = {}  # Step -> why it cannot be read.
  restored_step = None
  for step in steps:
    try:
      check_same_networks(manager, step, config, state, workdir)
      state = restore_checkpoint(manager, state, step, method)
    except NetworkMismatchError:
      raise
    except Exception as e:  # pylint: disable=broad-except  # Unreadable files.
      damaged[step] = checkpoints.failure_reason(e)
    else:
      restored_step = step
      break
  where = checkpoints.checkpoint_dir(workdir)
  if damaged and restored_step is None:
    raise ValueError(
      f'Every checkpoint in {where} is damaged (step {max(damaged)}: '
      f'{damaged[max(damaged)]}); move that folder aside to start afresh.'
    )
  if damaged:
    manager.close()
    for step, reason in damaged.items():
      moved = _set_aside(workdir, step) if jax.process_index() == 0 else 'aside'
      logging.warning(
        'Checkpoint step %d in %s is damaged (%s): moved to %s, resuming from step %d.',
        step,
        where,
        reason,
        moved,
        restored_step,
      )
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

      multihost_utils.sync_global_devices('cyclegan_jax: damaged checkpoints set aside')
    manager = checkpoints.create_manager(workdir, keep=config.keep_checkpoints)
  return state, restored_step, manager


def _write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  if jax.process_index() == 0:
    path = epath.Path(workdir)  # Local or a bucket (gs://...) that all hosts share.
    path.mkdir(parents=True, exist_ok=True)
    (path / 'config.json').write_text(
      json.dumps(config.to_dict(), indent=2, sort_keys=True)
    )


class _Preemption:
  """Turns SIGTERM and SIGINT (Ctrl-C) into a flag the loop polls, so it saves first.

  A second Ctrl-C while the save is pending exits at once, without saving (a repeated
  SIGTERM, which schedulers may send, does not cut the save short).
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self.signal_name = ''
    self._previous = {}

  def __enter__(self):
    for sig in self.SIGNALS:
      try:
        self._previous[sig] = signal.signal(sig, self._handler)
      except ValueError:  # Not the main thread: no handler, nothing to restore.
        pass
    return self

  def _handler(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.requested and signum == signal.SIGINT:
      logging.warning('%s again: exiting now, without saving.', name)
      logging.flush()
      os._exit(128 + signum)  # pylint: disable=protected-access
    if self.requested:  # Schedulers may repeat SIGTERM: the save goes on.
      logging.warning('%s again: already saving before stopping.', name)
      return
    logging.warning(
      '%s received: saving a checkpoint, then stopping (%s again exits at once).',
      name,
      'Ctrl-C' if signum == signal.SIGINT else name,
    )
    self.requested = True
    self.signal_name = name

  def __exit__(self, *exc):
    for sig, previous in self._previous.items():
      if previous is not None:
        signal.signal(sig, previous)

  def agreed(self) -> bool:
    """True when any process was asked to stop (all processes must save together)."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    flags = multihost_utils.process_allgather(np.array(self.requested))
    return bool(np.any(flags))


def _check_finite(
  metrics: dict[str, float], step: int, workdir: str, last_saved: int | None
) -> None:
  bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
  if bad:
    where = (
      f'the last good checkpoint (step {last_saved}) in {workdir} is intact'
      if last_saved is not None
      else 'no checkpoint was written'
    )
    raise FloatingPointError(
      f'Non-finite {", ".join(bad)} at step {step}; training halted and {where}. '
      'Lower --config.optim.lr, check the data, or use model.dtype=float32.'
    )


def train_and_evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, max_steps: int | None = None
) -> base.State:
  """Trains the method `config.method` names as `config` says, logging and checkpointing in `workdir`.

  Resumes from the latest checkpoint in `workdir` if there is one. Holds the workdir's
  lock meanwhile (`workdir_lock`): a second training on it is refused.

  Args:
    config: the run's config (configs/default.py documents every field).
    workdir: where checkpoints, summaries and config.json go.
    max_steps: run at most this many steps in this call, then save and return (for
      time-sliced jobs); the schedule still spans the whole run.

  Returns:
    The final train state.
  """
  config_checks.validate(config)
  errors.check_writable_folder(workdir, '--workdir')
  with workdir_lock.hold(workdir, 'training'):
    if jax.process_index() == 0:
      for path in checkpoints.remove_unfinished(workdir):
        logging.warning('Removed %s, left by a save that never finished.', path)
    try:
      return _train(config, workdir, max_steps=max_steps)
    except Exception as e:
      # A full disk fails several writers (checkpoints, event files): one line.
      failed_write = checkpoints.write_failure(e, workdir)
      if failed_write is None or failed_write is e:
        raise
      raise failed_write from e


def _train(
  config: ml_collections.ConfigDict, workdir: str, *, max_steps: int | None
) -> step_lib.TrainState:
  """`train_and_evaluate` once the workdir is locked."""
  num_devices, num_processes = jax.device_count(), jax.process_count()
  step_lib.check_batch_size(config.batch_size, num_devices, num_processes)
  mesh = jax.make_mesh((num_devices,), (step_lib.AXIS,))
  dataset, info = input_pipeline.create_train_dataset(
    config, process_index=jax.process_index(), process_count=num_processes
  )
  epoch_steps = step_lib.steps_per_epoch(info.epoch_length, config.batch_size)
  num_steps = step_lib.total_steps(config, info.epoch_length)
  images = (
    f'{info.epoch_length} training pairs'
    if config.dataset_mode == 'aligned'
    else f'{info.num_a} A / {info.num_b} B training images'
  )
  logging.info(
    'Data: %s; an epoch is %d pairs = %d steps; %d steps in all.',
    images,
    info.epoch_length,
    epoch_steps,
    num_steps,
  )

  method = methods.of_config(config)
  networks = step_lib.create_networks(config, info.epoch_length)
  logging.info(
    'Convolutions: model.conv_impl=%r, resolved to %r on %s.',
    config.model.get('conv_impl', 'auto'),
    getattr(networks.generator, 'conv_impl', 'xla'),
    jax.default_backend(),
  )
  image_shape = (config.crop_size, config.crop_size, config.model.input_nc)
  state = step_lib.create_train_state(
    networks,
    seed=config.seed,
    mesh=mesh,
    image_shape=image_shape,
    pool_size=config.pool_size,
  )
  manager = checkpoints.create_manager(workdir, keep=config.keep_checkpoints)
  state, last_saved, manager = resume(manager, state, config, workdir)
  if last_saved is not None:
    logging.info('Resuming from checkpoint %d in %s.', last_saved, workdir)
  _write_config(workdir, config)
  start_step = int(_local_value(state.step))

  p_train_step = step_lib.make_parallel_train_step(networks, mesh, state)
  translate = make_translate_fn(
    method,
    method.generator_modules(config.model),
    inference.TestMode(model_eval=config.eval.model_eval, seed=config.seed),
    config,
  )
  paired = config.dataset_mode == 'aligned'
  columns = sample_columns(method, paired)
  samples = {
    f'real_{d}': input_pipeline.sample_images(config, d, config.num_sample_images)
    for d in base.DOMAINS
    if f'real_{d}' in columns
  }
  writer = metric_writers.create_default_writer(
    workdir, just_logging=jax.process_index() > 0
  )
  report_progress = periodic_actions.ReportProgress(
    num_train_steps=num_steps, writer=writer, every_steps=config.log_every_steps
  )

  # Skip the batches a resumed run has already seen so the data order continues (the
  # stream is deterministic); tf.data skips without handing them to Python.
  batches = step_lib.device_batches(dataset.skip(start_step).as_numpy_iterator(), mesh)
  end_step = num_steps if max_steps is None else min(num_steps, start_step + max_steps)
  pending: list[dict[str, jax.Array]] = []
  step = start_step
  progress = _Progress(start_step, num_steps, method.console_terms)
  saves = checkpoints.SaveLog(workdir, last_saved)
  logging.info(
    'Training steps %d to %d; logs every %d steps.',
    start_step + 1,
    end_step,
    config.log_every_steps,
  )
  with _Preemption() as preemption, metric_writers.ensure_flushes(writer):
    for step in range(start_step + 1, end_step + 1):
      state, metrics = p_train_step(state, next(batches))
      pending.append(metrics)
      report_progress(step)
      is_last = step == end_step
      if step % config.log_every_steps == 0 or is_last:
        summary = _summarise(pending)
        pending = []
        _check_finite(summary, step, workdir, last_saved)
        writer.write_scalars(step, summary)
        logging.info('%s', progress.line(step, summary))
        saves.poll(manager)
      if (step % config.sample_every_steps == 0 or is_last) and _any_images(samples):
        out = translate(
          step_lib.inference_generators(state, method),
          samples,
          step_lib.stored_batch_stats(state),
        )
        grid = sample_grid(
          {**samples, **{k: _local_value(v) for k, v in out.items()}},
          columns,
        )
        writer.write_images(step, {'samples': grid[None]})
        _save_sample_png(workdir, step, grid)
      # Across processes agreeing costs a collective, so it waits for a log step.
      stop = (
        num_processes == 1 or step % config.log_every_steps == 0 or is_last
      ) and preemption.agreed()
      if step % config.checkpoint_every_steps == 0 or is_last or stop:
        if pending:  # Never save a state whose losses went non-finite unseen.
          _check_finite(_summarise(list(pending)), step, workdir, last_saved)
        workdir_lock.check(workdir)
        save = functools.partial(save_checkpoint, manager, state, config, force=stop)
        saves.queue(manager, step, save)
        last_saved = step
      if stop:
        saves.finish(manager)
        logging.warning(
          'Stopped at step %d on %s; the checkpoint is saved. Run '
          'the same command to resume.',
          step,
          preemption.signal_name or 'a signal',
        )
        break
  saves.finish(manager)
  manager.close()
  logging.info(
    'Finished at step %d. Checkpoints: %s; sample grids: %s; TensorBoard: '
    'tensorboard --logdir=%s',
    step,
    checkpoints.checkpoint_dir(workdir),
    epath.Path(workdir) / SAMPLES_DIR,
    workdir,
  )
  return state


class _Progress:
  """Steps/s and ETA since the previous console line, for the one line per log step.

  The line shows `terms` (the method's `console_terms`), in order, where the run has them.
  """

  def __init__(self, start_step: int, num_steps: int, terms: tuple[str, ...] = ()):
    self._num_steps = num_steps
    self._terms = terms
    self._last = (start_step, time.monotonic())
    self._compiled = False

  def line(self, step: int, summary: dict[str, float]) -> str:
    last_step, last_time = self._last
    now = time.monotonic()
    self._last = (step, now)
    if not self._compiled:  # The first interval is mostly compilation: no rate from it.
      self._compiled = True
      speed = f'{_duration(now - last_time)} incl. compilation'
    else:
      rate = (step - last_step) / max(now - last_time, 1e-9)
      speed = f'{rate:.2f} steps/s  ETA {_duration((self._num_steps - step) / rate)}'
    terms = '  '.join(f'{k} {summary[k]:.3f}' for k in self._terms if k in summary)
    width = len(str(self._num_steps))
    return f'step {step:>{width}}/{self._num_steps}  {speed}  {terms}'


def _duration(seconds: float) -> str:
  """'1h02m', '4m05s' or '12s'."""
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f'{hours}h{minutes:02d}m'
  return f'{minutes}m{secs:02d}s' if minutes else f'{secs}s'


def _summarise(metrics: list[dict[str, jax.Array]]) -> dict[str, float]:
  """Means over the steps since the last summary; the only host sync of the loop."""
  return {k: float(np.mean([_local_value(m[k]) for m in metrics])) for k in metrics[0]}
