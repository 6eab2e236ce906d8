"""CycleGAN training: state, schedule, the per-device step, its parallel wrapper, the loop.

The step is written per device, as under `pmap`: it sees its shard of the batch and
averages gradients and metrics with `lax.pmean` over the `data` axis. It is compiled with
`jax.jit` over `jax.shard_map` on a one-axis mesh of every device of every host (what
`jax.pmap` itself is in JAX >= 0.8). Parameters and optimiser states are replicated; the
batch, the image pools and the per-device keys are sharded on `data`.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import math
import signal
import time
from typing import Any, Callable, Iterable, Iterator

from absl import logging
from clu import metric_writers
from clu import periodic_actions
from etils import epath
import flax.linen as nn
import flax.struct
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cyclegan_jax import checkpoints
from cyclegan_jax import image_pool
from cyclegan_jax import input_pipeline
from cyclegan_jax import losses
from cyclegan_jax import models

PyTree = Any
AXIS = 'data'
GENERATORS = ('G_A', 'G_B')
DISCRIMINATORS = ('D_A', 'D_B')


# --------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------


def steps_per_epoch(epoch_length: int, batch_size: int) -> int:
  """Steps in one epoch of max(|A|, |B|) pairs (the reference keeps the last short batch)."""
  return max(1, math.ceil(epoch_length / batch_size))


def total_steps(config: ml_collections.ConfigDict, epoch_length: int) -> int:
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return steps_per_epoch(epoch_length, config.batch_size) * (
      config.num_epochs + config.num_epochs_decay)


def create_learning_rate_schedule(config: ml_collections.ConfigDict,
                                  epoch_length: int) -> optax.Schedule:
  """The reference's `linear` policy: constant for `num_epochs`, then linear decay.

  During (0-based) epoch e the rate is lr · (1 − max(0, e + 1 − num_epochs) /
  (num_epochs_decay + 1)), so the last epoch runs at lr / (num_epochs_decay + 1). With
  `num_train_steps > 0` an "epoch" is num_train_steps / (num_epochs + num_epochs_decay)
  steps, which keeps the same shape. `lr_schedule_granularity = 'step'` interpolates e
  continuously instead of stepping once per epoch.
  """
  n_const, n_decay = config.num_epochs, config.num_epochs_decay
  if config.num_train_steps > 0:
    epoch_steps = config.num_train_steps / max(1, n_const + n_decay)
  else:
    epoch_steps = float(steps_per_epoch(epoch_length, config.batch_size))
  granularity = config.lr_schedule_granularity
  if granularity not in ('epoch', 'step'):
    raise ValueError(
        f"lr_schedule_granularity must be 'epoch' or 'step', got {granularity!r}.")
  base_lr = config.optim.lr

  def schedule(count: jax.Array) -> jax.Array:
    epoch = jnp.asarray(count, jnp.float32) / epoch_steps
    if granularity == 'epoch':
      epoch = jnp.floor(epoch)
    factor = 1.0 - jnp.maximum(0.0, epoch + 1.0 - n_const) / (n_decay + 1.0)
    return base_lr * jnp.clip(factor, 0.0, 1.0)

  return schedule


# --------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Networks:
  """The static half of training: modules, optimisers, schedule and loss settings."""
  generator: nn.Module
  discriminator: nn.Module
  tx_g: optax.GradientTransformation
  tx_d: optax.GradientTransformation
  schedule: optax.Schedule
  loss: ml_collections.FrozenConfigDict


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a pytree of global arrays."""
  step: jax.Array                 # int32 scalar, replicated.
  params: dict[str, PyTree]       # {'G_A', 'G_B', 'D_A', 'D_B'}, replicated.
  opt_state_g: optax.OptState     # one Adam for both generators, replicated.
  opt_state_d: optax.OptState     # one Adam for both discriminators, replicated.
  pools: dict[str, image_pool.ImagePool]  # {'A', 'B'} fakes; per device, sharded.
  rng: jax.Array                  # [devices, 2] uint32 key data; per device, sharded.


def create_networks(config: ml_collections.ConfigDict, epoch_length: int) -> Networks:
  schedule = create_learning_rate_schedule(config, epoch_length)
  if config.loss.gan_mode not in losses.GAN_MODES:
    raise ValueError(f'loss.gan_mode must be one of {losses.GAN_MODES}, '
                     f'got {config.loss.gan_mode!r}.')

  def adam():
    return optax.adam(schedule, b1=config.optim.beta1, b2=config.optim.beta2)

  discriminator = models.discriminator_from_config(config.model)
  check_discriminator_fits(discriminator, config.crop_size)

  return Networks(
      generator=models.generator_from_config(config.model),
      discriminator=discriminator,
      tx_g=adam(), tx_d=adam(), schedule=schedule,
      loss=ml_collections.FrozenConfigDict(config.loss))


def check_discriminator_fits(discriminator: nn.Module, crop_size: int) -> None:
  """A PatchGAN needs a minimum input size; below it its output is empty (NaN losses)."""
  def out_size(size):
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return jax.eval_shape(discriminator.init_with_output, jax.random.key(0), x)[0].shape[1]

  if out_size(crop_size) < 1:
    smallest = next(s for s in range(crop_size, 4096) if out_size(s) >= 1)
    raise ValueError(
        f'crop_size={crop_size} is too small for the {discriminator.num_layers}-layer '
        f'PatchGAN (its output would be empty): use crop_size >= {smallest}, or a '
        f"shallower critic (--config.model.netD=n_layers --config.model.n_layers_D=2).")


def _state_specs(state: TrainState) -> TrainState:
  """PartitionSpecs: replicated except the per-device pools and keys."""
  replicated = jax.tree.map(lambda _: P(), state)
  return replicated.replace(
      pools=jax.tree.map(lambda _: P(AXIS), state.pools),
      rng=P(AXIS))


def state_shardings(state: TrainState, mesh: jax.sharding.Mesh) -> TrainState:
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), _state_specs(state),
                      is_leaf=lambda x: isinstance(x, P))


def init_params(networks: Networks, key: jax.Array,
                image_shape: tuple[int, int, int]) -> dict[str, PyTree]:
  dummy = jnp.zeros((1, *image_shape), jnp.float32)
  keys = jax.random.split(key, 4)
  init_g = lambda k: networks.generator.init(k, dummy)['params']
  init_d = lambda k: networks.discriminator.init(k, dummy)['params']
  return {'G_A': init_g(keys[0]), 'G_B': init_g(keys[1]),
          'D_A': init_d(keys[2]), 'D_B': init_d(keys[3])}


def create_train_state(networks: Networks, *, seed: int, mesh: jax.sharding.Mesh,
                       image_shape: tuple[int, int, int], pool_size: int) -> TrainState:
  """Initialises the state directly with its shardings (no host copies)."""
  num_devices = mesh.devices.size

  def init() -> TrainState:
    rng_key = jax.random.key(seed)
    # 'rbg' keys compile ~10x faster than threefry for the many N(0, 0.02) draws.
    params = init_params(networks, jax.random.key(seed, impl='rbg'), image_shape)
    pool = image_pool.init_pool(pool_size, image_shape)
    pools = jax.tree.map(lambda x: jnp.stack([x] * num_devices), {'A': pool, 'B': pool})
    # Stacked on a leading device axis, flattened for the images: each device's shard
    # of `images` is then its own [pool_size, H, W, C] buffer.
    pools = jax.tree.map(
        lambda x: x.reshape((num_devices * x.shape[1],) + x.shape[2:]) if x.ndim > 1 else x,
        pools)
    return TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        opt_state_g=networks.tx_g.init({k: params[k] for k in GENERATORS}),
        opt_state_d=networks.tx_d.init({k: params[k] for k in DISCRIMINATORS}),
        pools=pools,
        rng=jax.random.key_data(jax.random.split(rng_key, num_devices)))

  abstract = jax.eval_shape(init)
  return jax.jit(init, out_shardings=state_shardings(abstract, mesh))()


# --------------------------------------------------------------------------------------
# The per-device step
# --------------------------------------------------------------------------------------


def generator_losses(g_params: dict[str, PyTree], d_params: dict[str, PyTree],
                     real_a: jax.Array, real_b: jax.Array, *, networks: Networks,
                     ) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, jax.Array]]]:
  """The generators' objective with the discriminators fixed (reference `backward_G`)."""
  cfg = networks.loss
  gen = lambda name, x: networks.generator.apply({'params': g_params[name]}, x)
  dis = lambda name, x: networks.discriminator.apply({'params': d_params[name]}, x)

  fake_b = gen('G_A', real_a)
  rec_a = gen('G_B', fake_b)
  fake_a = gen('G_B', real_b)
  rec_b = gen('G_A', fake_a)
  terms = {
      'loss_G_A': losses.gan_loss(dis('D_A', fake_b), True, cfg.gan_mode),
      'loss_G_B': losses.gan_loss(dis('D_B', fake_a), True, cfg.gan_mode),
      'loss_cycle_A': losses.l1_loss(rec_a, real_a) * cfg.lambda_A,
      'loss_cycle_B': losses.l1_loss(rec_b, real_b) * cfg.lambda_B,
  }
  total = (cfg.lambda_gan * (terms['loss_G_A'] + terms['loss_G_B'])
           + terms['loss_cycle_A'] + terms['loss_cycle_B'])
  if cfg.lambda_identity > 0:
    # G_A should leave B images alone, G_B should leave A images alone.
    terms['loss_idt_A'] = (losses.l1_loss(gen('G_A', real_b), real_b)
                           * cfg.lambda_B * cfg.lambda_identity)
    terms['loss_idt_B'] = (losses.l1_loss(gen('G_B', real_a), real_a)
                           * cfg.lambda_A * cfg.lambda_identity)
    total = total + terms['loss_idt_A'] + terms['loss_idt_B']
  terms['loss_G'] = total
  return total, (terms, {'fake_A': fake_a, 'fake_B': fake_b})


def discriminator_losses(d_params: dict[str, PyTree], real_a: jax.Array,
                         real_b: jax.Array, fake_a: jax.Array, fake_b: jax.Array, *,
                         networks: Networks,
                         ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Both critics' objectives on real images and pooled fakes (reference `backward_D_*`)."""
  gan_mode = networks.loss.gan_mode
  dis = lambda name, x: networks.discriminator.apply({'params': d_params[name]}, x)
  real_ya, fake_ya = dis('D_A', real_b), dis('D_A', fake_b)
  real_yb, fake_yb = dis('D_B', real_a), dis('D_B', fake_a)
  terms = {
      'loss_D_A': losses.discriminator_loss(real_ya, fake_ya, gan_mode),
      'loss_D_B': losses.discriminator_loss(real_yb, fake_yb, gan_mode),
      'D_A_real': losses.discriminator_score(real_ya, gan_mode),
      'D_A_fake': losses.discriminator_score(fake_ya, gan_mode),
      'D_B_real': losses.discriminator_score(real_yb, gan_mode),
      'D_B_fake': losses.discriminator_score(fake_yb, gan_mode),
  }
  return terms['loss_D_A'] + terms['loss_D_B'], terms


def _apply_updates(tx: optax.GradientTransformation, params: dict[str, PyTree],
                   opt_state: optax.OptState, grads: dict[str, PyTree],
                   ) -> tuple[dict[str, PyTree], optax.OptState]:
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def train_step(state: TrainState, batch: dict[str, jax.Array], *, networks: Networks,
               axis_name: str | None = AXIS) -> tuple[TrainState, dict[str, jax.Array]]:
  """One CycleGAN iteration on this device's shard of the batch.

  Generators first, with the discriminators fixed; then both discriminators, on fakes
  made before the generator update and drawn through the image pools. Gradients and
  metrics are averaged over `axis_name` (None: a plain single-device step).
  """
  if axis_name:
    mean = lambda x: jax.lax.pmean(x, axis_name)
    # Differentiate this device's loss w.r.t. a per-device copy of the replicated
    # parameters: without the cast, autodiff under shard_map would psum the gradients
    # itself (the transpose of the implicit invariant->varying cast), giving the sum
    # over devices rather than pmap's per-device gradients that `mean` then averages.
    local = lambda tree: jax.tree.map(lambda x: jax.lax.pcast(x, axis_name, to='varying'), tree)
  else:
    mean = local = lambda x: x
  real_a, real_b = batch['A'], batch['B']
  g_params = local({k: state.params[k] for k in GENERATORS})
  d_params = local({k: state.params[k] for k in DISCRIMINATORS})

  g_grads, (g_terms, fakes) = jax.grad(
      lambda p: generator_losses(p, d_params, real_a, real_b, networks=networks),
      has_aux=True)(g_params)
  new_g_params, opt_state_g = _apply_updates(
      networks.tx_g, {k: state.params[k] for k in GENERATORS}, state.opt_state_g,
      mean(g_grads))

  key = jax.random.wrap_key_data(state.rng[0])
  key, key_a, key_b = jax.random.split(key, 3)
  pool_a, fake_a = image_pool.query(_local_pool(state.pools['A']),
                                    jax.lax.stop_gradient(fakes['fake_A']), key_a)
  pool_b, fake_b = image_pool.query(_local_pool(state.pools['B']),
                                    jax.lax.stop_gradient(fakes['fake_B']), key_b)

  d_grads, d_terms = jax.grad(
      lambda p: discriminator_losses(p, real_a, real_b, fake_a, fake_b, networks=networks),
      has_aux=True)(d_params)
  new_d_params, opt_state_d = _apply_updates(
      networks.tx_d, {k: state.params[k] for k in DISCRIMINATORS}, state.opt_state_d,
      mean(d_grads))

  metrics = mean({**g_terms, **d_terms})
  metrics['learning_rate'] = networks.schedule(state.step)
  new_state = state.replace(
      step=state.step + 1, params={**new_g_params, **new_d_params},
      opt_state_g=opt_state_g, opt_state_d=opt_state_d,
      pools={'A': _global_pool(pool_a), 'B': _global_pool(pool_b)},
      rng=jax.random.key_data(key)[None])
  return new_state, metrics


def _local_pool(pool: image_pool.ImagePool) -> image_pool.ImagePool:
  """This device's shard of a pool: its `count` arrives as a length-1 vector."""
  return pool.replace(count=pool.count[0])


def _global_pool(pool: image_pool.ImagePool) -> image_pool.ImagePool:
  return pool.replace(count=pool.count[None])


def make_parallel_train_step(networks: Networks, mesh: jax.sharding.Mesh,
                             state: TrainState,
                             ) -> Callable[[TrainState, dict[str, jax.Array]],
                                           tuple[TrainState, dict[str, jax.Array]]]:
  """`train_step` under `jax.shard_map` over `data`, jitted, the state donated."""
  specs = _state_specs(state)
  step = jax.shard_map(
      functools.partial(train_step, networks=networks, axis_name=AXIS), mesh=mesh,
      in_specs=(specs, P(AXIS)), out_specs=(specs, P()))
  return jax.jit(step, donate_argnums=(0,))


# --------------------------------------------------------------------------------------
# Inference helpers used for sample grids
# --------------------------------------------------------------------------------------


def make_translate_fn(generator: nn.Module) -> Callable[..., dict[str, jax.Array]]:
  """A jitted function: both directions and their reconstructions."""

  @jax.jit
  def translate(g_params: dict[str, PyTree], real_a: jax.Array, real_b: jax.Array):
    gen = lambda name, x: generator.apply({'params': g_params[name]}, x)
    fake_b = gen('G_A', real_a)
    fake_a = gen('G_B', real_b)
    return {'fake_B': fake_b, 'rec_A': gen('G_B', fake_b),
            'fake_A': fake_a, 'rec_B': gen('G_A', fake_a)}

  return translate


def sample_grid(images: dict[str, np.ndarray]) -> np.ndarray:
  """Rows of A, G(A), F(G(A)), B, F(B), G(F(B)) as one [H', W', 3] image in [0, 1]."""
  columns = [images[k] for k in ('real_A', 'fake_B', 'rec_A', 'real_B', 'fake_A', 'rec_B')]
  grid = np.concatenate([np.concatenate(list(c), axis=0) for c in columns], axis=1)
  return np.clip((grid + 1.0) / 2.0, 0.0, 1.0)


def _local_value(x: jax.Array) -> np.ndarray:
  """A replicated global array's value, readable on every process."""
  return np.asarray(x.addressable_shards[0].data)


# --------------------------------------------------------------------------------------
# Host side: batches, checkpoints, the loop
# --------------------------------------------------------------------------------------


def device_batches(batches: Iterable[dict[str, np.ndarray]], mesh: jax.sharding.Mesh,
                   prefetch: int = 2) -> Iterator[dict[str, jax.Array]]:
  """Per-host numpy batches → global arrays sharded on `data`, `prefetch` in flight."""
  sharding = NamedSharding(mesh, P(AXIS))
  queue = collections.deque()

  def put(batch):
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in batch.items()}

  iterator = iter(batches)
  for batch in iterator:
    queue.append(put(batch))
    if len(queue) > prefetch:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def check_batch_size(batch_size: int, num_devices: int, num_processes: int) -> None:
  if batch_size % num_devices:
    raise ValueError(
        f'batch_size={batch_size} does not divide by the {num_devices} devices '
        f'({num_processes} process(es)): it is the GLOBAL batch. Use a multiple of '
        f'{num_devices}, e.g. --config.batch_size={num_devices * max(1, batch_size // num_devices)}.')


def _opt_and_step(state: TrainState) -> dict[str, PyTree]:
  return {'step': state.step, 'opt_state_g': state.opt_state_g,
          'opt_state_d': state.opt_state_d}


def _per_device(state: TrainState) -> dict[str, PyTree]:
  # Orbax refuses zero-size arrays, and a disabled pool (pool_size 0) holds nothing.
  if state.pools['A'].images.size == 0:
    return {'rng': state.rng}
  return {'pools': state.pools, 'rng': state.rng}


def save_checkpoint(manager, state: TrainState, config: ml_collections.ConfigDict,
                    *, force: bool = False) -> None:
  step = int(_local_value(state.step))
  checkpoints.save(manager, step, params=state.params, config=config.to_dict(),
                   state=_opt_and_step(state), per_device=_per_device(state),
                   force=force)


def restore_checkpoint(manager, state: TrainState, step: int) -> TrainState:
  """Restores a training checkpoint into `state`'s structure and shardings.

  The per-device image pools and keys only fit the device count that wrote them; with
  another count they start afresh (the pool is a history of recent fakes, so nothing
  of value is lost) and this is logged.
  """
  abstract = lambda tree: jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
  same_devices = (checkpoints.per_device_shapes(manager, step)
                  == checkpoints.shapes_by_path(_per_device(state)))
  restored = checkpoints.restore_train(
      manager, step, params=abstract(state.params), state=abstract(_opt_and_step(state)),
      per_device=abstract(_per_device(state)) if same_devices else None)
  state = state.replace(params=restored['params'], **restored['state'])
  if same_devices:
    state = state.replace(**restored['per_device'])
  else:
    logging.warning('Checkpoint %d was written with another device count; its image '
                    'pools and per-device keys start afresh.', step)
  return state


def _write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  if jax.process_index() == 0:
    path = epath.Path(workdir)  # Local or a bucket (gs://...) that all hosts share.
    path.mkdir(parents=True, exist_ok=True)
    (path / 'config.json').write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True))


class _Preemption:
  """Turns SIGTERM into a flag the loop polls, so it can save before exiting."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handler)
    except ValueError:  # Not the main thread: no handler, nothing to restore.
      self._previous = None
    return self

  def _handler(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint before exiting.')
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)

  def agreed(self) -> bool:
    """True when any process was asked to stop (all processes must save together)."""
    if jax.process_count() == 1:
      return self.requested
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    flags = multihost_utils.process_allgather(np.array(self.requested))
    return bool(np.any(flags))


def _check_finite(metrics: dict[str, float], step: int, workdir: str,
                  last_saved: int | None) -> None:
  bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
  if bad:
    where = (f'the last good checkpoint (step {last_saved}) in {workdir} is intact'
             if last_saved is not None else 'no checkpoint was written')
    raise FloatingPointError(
        f'Non-finite {", ".join(bad)} at step {step}; training halted and {where}. '
        'Lower --config.optim.lr, check the data, or use model.dtype=float32.')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       max_steps: int | None = None) -> TrainState:
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
  num_devices, num_processes = jax.device_count(), jax.process_count()
  check_batch_size(config.batch_size, num_devices, num_processes)
  mesh = jax.make_mesh((num_devices,), (AXIS,))
  dataset, info = input_pipeline.create_train_dataset(
      config, process_index=jax.process_index(), process_count=num_processes)
  epoch_steps = steps_per_epoch(info.epoch_length, config.batch_size)
  num_steps = total_steps(config, info.epoch_length)
  logging.info('Data: %d A / %d B training images; an epoch is %d pairs = %d steps; '
               '%d steps in all.', info.num_a, info.num_b, info.epoch_length,
               epoch_steps, num_steps)

  networks = create_networks(config, info.epoch_length)
  image_shape = (config.crop_size, config.crop_size, 3)
  state = create_train_state(networks, seed=config.seed, mesh=mesh,
                             image_shape=image_shape, pool_size=config.pool_size)
  manager = checkpoints.create_manager(workdir, keep=config.keep_checkpoints)
  last_saved = manager.latest_step()
  if last_saved is not None:
    logging.info('Resuming from checkpoint %d in %s.', last_saved, workdir)
    state = restore_checkpoint(manager, state, last_saved)
  _write_config(workdir, config)
  start_step = int(_local_value(state.step))

  p_train_step = make_parallel_train_step(networks, mesh, state)
  translate = make_translate_fn(networks.generator)
  samples = {
      'real_A': input_pipeline.fixed_test_images(config, 'A', config.num_sample_images),
      'real_B': input_pipeline.fixed_test_images(config, 'B', config.num_sample_images),
  }
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  report_progress = periodic_actions.ReportProgress(
      num_train_steps=num_steps, writer=writer, every_steps=config.log_every_steps)

  # Skip the batches a resumed run has already seen so the data order continues (the
  # stream is deterministic); tf.data skips without handing them to Python.
  batches = device_batches(dataset.skip(start_step).as_numpy_iterator(), mesh)
  end_step = num_steps if max_steps is None else min(num_steps, start_step + max_steps)
  pending: list[dict[str, jax.Array]] = []
  step = start_step
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
      if step % config.sample_every_steps == 0 or is_last:
        out = translate({k: state.params[k] for k in GENERATORS},
                        samples['real_A'], samples['real_B'])
        grid = sample_grid({**samples, **{k: _local_value(v) for k, v in out.items()}})
        writer.write_images(step, {'samples': grid[None]})
      # Across processes agreeing costs a collective, so it waits for a log step.
      stop = ((num_processes == 1 or step % config.log_every_steps == 0 or is_last)
              and preemption.agreed())
      if step % config.checkpoint_every_steps == 0 or is_last or stop:
        if pending:  # Never save a state whose losses went non-finite unseen.
          _check_finite(_summarise(list(pending)), step, workdir, last_saved)
        save_checkpoint(manager, state, config, force=stop)
        last_saved = step
      if stop:
        logging.warning('Stopped at step %d on SIGTERM; the checkpoint is saved. Run '
                        'the same command to resume.', step)
        break
  manager.wait_until_finished()
  manager.close()
  return state


def _summarise(metrics: list[dict[str, jax.Array]]) -> dict[str, float]:
  """Means over the steps since the last summary; the only host sync of the loop."""
  return {k: float(np.mean([_local_value(m[k]) for m in metrics])) for k in metrics[0]}
