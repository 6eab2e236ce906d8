"""CycleGAN training loop: data in, the step (step.py) run, logs, samples, checkpoints out.

`train_and_evaluate` builds the input pipeline, the networks and the replicated state,
resumes from the newest checkpoint in `workdir`, runs the sharded step of `step.py`,
writes metrics and sample grids with clu's writers, and saves Orbax checkpoints
(also on preemption).
"""

from __future__ import annotations

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
import flax.linen as nn
import jax
import ml_collections
import numpy as np

from cyclegan_jax.cli import config_checks
from cyclegan_jax.cli import errors
from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.data import input_pipeline
from cyclegan_jax.deploy import inference
from cyclegan_jax.train import checkpoints
from cyclegan_jax.train import step as step_lib

PyTree = Any


# --------------------------------------------------------------------------------------
# Inference helpers used for sample grids
# --------------------------------------------------------------------------------------


def make_translate_fn(
  generator: nn.Module, generator_b: nn.Module | None = None
) -> Callable[..., dict[str, jax.Array]]:
  """A jitted function: both directions and their reconstructions.

  `generator_b` is G_B's module where it differs from G_A's (None: the same).
  """
  gen_a = inference.generator_fn(generator)
  gen_b = inference.generator_fn(generator_b or generator)

  @jax.jit
  def translate(g_params: dict[str, PyTree], real_a: jax.Array, real_b: jax.Array):
    fake_b = gen_a(g_params['G_A'], real_a)
    fake_a = gen_b(g_params['G_B'], real_b)
    return {
      'fake_B': fake_b,
      'rec_A': gen_b(g_params['G_B'], fake_b),
      'fake_A': fake_a,
      'rec_B': gen_a(g_params['G_A'], fake_a),
    }

  return translate


def sample_grid(images: dict[str, np.ndarray]) -> np.ndarray:
  """Rows of A, G(A), F(G(A)), B, F(B), G(F(B)) as one [H', W', 3] image in [0, 1].

  1-channel images (a grayscale domain) are shown as gray RGB.
  """
  columns = [
    channels_lib.to_channels(images[k], 3)
    for k in ('real_A', 'fake_B', 'rec_A', 'real_B', 'fake_A', 'rec_B')
  ]
  grid = np.concatenate([np.concatenate(list(c), axis=0) for c in columns], axis=1)
  return np.clip((grid + 1.0) / 2.0, 0.0, 1.0)


def _local_value(x: jax.Array) -> np.ndarray:
  """A replicated global array's value, readable on every process."""
  return np.asarray(x.addressable_shards[0].data)


# --------------------------------------------------------------------------------------
# Host side: batches, checkpoints, the loop
# --------------------------------------------------------------------------------------


def _opt_and_step(state: step_lib.TrainState) -> dict[str, PyTree]:
  items = {
    'step': state.step,
    'opt_state_g': state.opt_state_g,
    'opt_state_d': state.opt_state_d,
  }
  if state.critic_stats:  # Only with spectral norm: other checkpoints stay as they were.
    items['critic_stats'] = state.critic_stats
  return items


def _per_device(state: step_lib.TrainState) -> dict[str, PyTree]:
  items = {'rng': state.rng}
  # Orbax refuses zero-size arrays, and a disabled pool (pool_size 0) holds nothing.
  if state.pools['A'].images.size:
    items['pools'] = state.pools
  if state.banks:  # Only with the patch-distribution loss: others stay as they were.
    items['banks'] = state.banks
  return items


def save_checkpoint(
  manager,
  state: step_lib.TrainState,
  config: ml_collections.ConfigDict,
  *,
  force: bool = False,
) -> None:
  step = int(_local_value(state.step))
  checkpoints.save(
    manager,
    step,
    params=state.params,
    config=config.to_dict(),
    state=_opt_and_step(state),
    per_device=_per_device(state),
    ema=state.ema or None,
    force=force,
  )


def restore_checkpoint(
  manager, state: step_lib.TrainState, step: int
) -> step_lib.TrainState:
  """Restores a training checkpoint into `state`'s structure and shardings.

  The per-device image pools and keys only fit the device count that wrote them; with
  another count they start afresh (the pool is a history of recent fakes, so nothing
  of value is lost) and this is logged.
  """
  abstract = lambda tree: jax.tree.map(
    lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree
  )
  same_devices = checkpoints.per_device_shapes(
    manager, step
  ) == checkpoints.shapes_by_path(_per_device(state))
  # A run with EMA on may resume one that had it off (or predates it).
  ema_saved = bool(state.ema) and checkpoints.has_item(manager, step, checkpoints.EMA)
  restored = checkpoints.restore_train(
    manager,
    step,
    params=abstract(state.params),
    state=abstract(_opt_and_step(state)),
    per_device=abstract(_per_device(state)) if same_devices else None,
    ema=abstract(state.ema) if ema_saved else None,
  )
  state = state.replace(params=restored['params'], **restored['state'])
  if ema_saved:
    state = state.replace(ema=restored[checkpoints.EMA])
  elif state.ema:
    state = state.replace(ema=_copy_generators(state.params))
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


@jax.jit
def _copy_generators(params: dict[str, PyTree]) -> dict[str, PyTree]:
  return step_lib.initial_ema(params)


def inference_generators(state: step_lib.TrainState) -> dict[str, PyTree]:
  """The generators samples are drawn with: the weight average when kept, else the raw."""
  return state.ema or {k: state.params[k] for k in step_lib.GENERATORS}


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
  state: step_lib.TrainState,
  workdir: str,
) -> None:
  """Raises ValueError naming the field when the checkpoint holds other networks.

  Reads only the checkpoint's config and metadata, so a mismatch is told apart from
  damage before any array is read.
  """
  saved = checkpoints.saved_config(manager, step).get('model') or {}
  # Checkpoints written before the channel fields existed are RGB in both domains.
  saved = {'input_nc': 3, 'output_nc': 3, **saved}
  where = f'the checkpoint (step {step} in {checkpoints.checkpoint_dir(workdir)})'
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


def resume(
  manager, state: step_lib.TrainState, config: ml_collections.ConfigDict, workdir: str
):
  """Restores the newest intact checkpoint; sets damaged newer steps aside.

  Returns:
    (state, the restored step or None, the manager to go on with).

  Raises:
    ValueError: the checkpoint holds other networks than the config describes, or no
      step is intact.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  damaged: dict[int, str] = {}  # Step -> why it cannot be read.
  restored_step = None
  for step in steps:
    try:
      check_same_networks(manager, step, config, state, workdir)
      state = restore_checkpoint(manager, state, step)
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
) -> step_lib.TrainState:
  """Trains CycleGAN as `config` says, logging and checkpointing in `workdir`.

  Resumes from the latest checkpoint in `workdir` if there is one.

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
  num_devices, num_processes = jax.device_count(), jax.process_count()
  step_lib.check_batch_size(config.batch_size, num_devices, num_processes)
  mesh = jax.make_mesh((num_devices,), (step_lib.AXIS,))
  dataset, info = input_pipeline.create_train_dataset(
    config, process_index=jax.process_index(), process_count=num_processes
  )
  epoch_steps = step_lib.steps_per_epoch(info.epoch_length, config.batch_size)
  num_steps = step_lib.total_steps(config, info.epoch_length)
  logging.info(
    'Data: %d A / %d B training images; an epoch is %d pairs = %d steps; '
    '%d steps in all.',
    info.num_a,
    info.num_b,
    info.epoch_length,
    epoch_steps,
    num_steps,
  )

  networks = step_lib.create_networks(config, info.epoch_length)
  logging.info(
    'Convolutions: model.conv_impl=%r, resolved to %r on %s.',
    config.model.get('conv_impl', 'auto'),
    networks.generator.conv_impl,
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
  translate = make_translate_fn(networks.generator, networks.generator_b)
  samples = {
    'real_A': input_pipeline.fixed_test_images(config, 'A', config.num_sample_images),
    'real_B': input_pipeline.fixed_test_images(config, 'B', config.num_sample_images),
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
  progress = _Progress(start_step, num_steps)
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
      if step % config.sample_every_steps == 0 or is_last:
        out = translate(
          inference_generators(state),
          samples['real_A'],
          samples['real_B'],
        )
        grid = sample_grid({**samples, **{k: _local_value(v) for k, v in out.items()}})
        writer.write_images(step, {'samples': grid[None]})
        _save_sample_png(workdir, step, grid)
      # Across processes agreeing costs a collective, so it waits for a log step.
      stop = (
        num_processes == 1 or step % config.log_every_steps == 0 or is_last
      ) and preemption.agreed()
      if step % config.checkpoint_every_steps == 0 or is_last or stop:
        if pending:  # Never save a state whose losses went non-finite unseen.
          _check_finite(_summarise(list(pending)), step, workdir, last_saved)
        save_checkpoint(manager, state, config, force=stop)
        logging.info('Checkpoint %d saved.', step)
        last_saved = step
      if stop:
        logging.warning(
          'Stopped at step %d on %s; the checkpoint is saved. Run '
          'the same command to resume.',
          step,
          preemption.signal_name or 'a signal',
        )
        break
  manager.wait_until_finished()
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


# The console line: the terms a user watches, in this order, where the run has them.
_CONSOLE_TERMS = (
  'loss_G',
  'loss_D_A',
  'loss_D_B',
  'loss_cycle_A',
  'loss_cycle_B',
  'loss_idt_A',
  'loss_idt_B',
  'loss_swd_A',
  'loss_swd_B',
)


class _Progress:
  """Steps/s and ETA since the previous console line, for the one line per log step."""

  def __init__(self, start_step: int, num_steps: int):
    self._num_steps = num_steps
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
    terms = '  '.join(f'{k} {summary[k]:.3f}' for k in _CONSOLE_TERMS if k in summary)
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
