"""The shared training step: schedule, state sharding, keys and the sharded step.

Nothing here names a method's networks: `config.method` picks a `methods.base.Method`,
which builds its networks, state and per-device step; this module runs that step
compiled with `jax.jit` over `jax.shard_map` on a one-axis mesh of every device of every
host (what `jax.pmap` itself is in JAX >= 0.8). The step sees its shard of the batch
and averages gradients and metrics with `lax.pmean` over the `data` axis. The method's
per-device state fields are sharded on `data`; all else is replicated.

Nothing here reads data from disk or writes logs (that is `loop.py`), so the step runs,
and is benchmarked, without TensorFlow.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from typing import Any, Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import optax

from cyclegan_jax import methods
from cyclegan_jax.methods import base
from cyclegan_jax.methods import step_parts

PyTree = Any
AXIS = step_parts.AXIS


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
    config.num_epochs + config.num_epochs_decay
  )


def create_learning_rate_schedule(
  config: ml_collections.ConfigDict, epoch_length: int
) -> optax.Schedule:
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
      f"lr_schedule_granularity must be 'epoch' or 'step', got {granularity!r}."
    )
  base_lr = config.optim.lr * batch_lr_factor(
    config.optim.lr_batch_scaling, config.batch_size
  )

  def schedule(count: jax.Array) -> jax.Array:
    epoch = jnp.asarray(count, jnp.float32) / epoch_steps
    if granularity == 'epoch':
      epoch = jnp.floor(epoch)
    factor = 1.0 - jnp.maximum(0.0, epoch + 1.0 - n_const) / (n_decay + 1.0)
    return base_lr * jnp.clip(factor, 0.0, 1.0)

  return schedule


def batch_lr_factor(scaling: str, batch_size: int) -> float:
  """The learning rates' factor for a global batch (reference batch 1): 'none' keeps
  them, 'linear' multiplies by the batch, 'sqrt' by its square root."""
  if scaling == 'none':
    return 1.0
  if scaling == 'linear':
    return float(batch_size)
  if scaling == 'sqrt':
    return math.sqrt(batch_size)
  raise ValueError(
    f"optim.lr_batch_scaling must be 'none', 'linear' or 'sqrt', got {scaling!r}."
  )


# --------------------------------------------------------------------------------------
# Method and state
# --------------------------------------------------------------------------------------


def method_of(networks: base.Networks) -> base.Method:
  """The method that built `networks`."""
  return methods.get(networks.method)


def create_networks(config: ml_collections.ConfigDict, epoch_length: int) -> Any:
  """The networks of the method `config.method` names, on the config's schedule."""
  method = methods.get(methods.name_of(config))
  return method.create_networks(
    config, create_learning_rate_schedule(config, epoch_length)
  )


def _state_specs(state: base.State, method: base.Method) -> base.State:
  """PartitionSpecs: replicated except the method's per-device fields."""
  replicated = jax.tree.map(lambda _: P(), state)
  return replicated.replace(
    **{
      f: jax.tree.map(lambda _: P(AXIS), getattr(state, f))
      for f in method.per_device_fields
    }
  )


def state_shardings(
  state: base.State, mesh: jax.sharding.Mesh, method: base.Method
) -> base.State:
  return jax.tree.map(
    lambda spec: NamedSharding(mesh, spec),
    _state_specs(state, method),
    is_leaf=lambda x: isinstance(x, P),
  )


def _fields(state: base.State) -> dict[str, PyTree]:
  return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}


def _stored(tree: PyTree) -> bool:
  """Whether a state field goes into checkpoints: Orbax refuses zero-size arrays, and
  an empty field (a disabled pool or option) holds nothing."""
  leaves = jax.tree.leaves(tree)
  return bool(leaves) and all(leaf.size for leaf in leaves)


def replicated_items(state: base.State, method: base.Method) -> dict[str, PyTree]:
  """The replicated state a resume needs besides `params`, `ema` and `batch_stats`
  (items of their own), by field name."""
  skip = {'params', 'ema', 'batch_stats', *method.per_device_fields}
  return {k: v for k, v in _fields(state).items() if k not in skip and _stored(v)}


def per_device_items(state: base.State, method: base.Method) -> dict[str, PyTree]:
  """The per-device state (pools, keys, ...), by field name."""
  return {
    f: getattr(state, f) for f in method.per_device_fields if _stored(getattr(state, f))
  }


def create_train_state(
  networks: base.Networks,
  *,
  seed: int,
  mesh: jax.sharding.Mesh,
  image_shape: tuple[int, int, int],
  pool_size: int,
) -> base.State:
  """Initialises the method's state directly with its shardings (no host copies).

  `image_shape` is domain A's (H, W, C); `seed` seeds the parameters and the per-device
  keys.
  """
  method = method_of(networks)
  num_devices = mesh.devices.size

  def init() -> base.State:
    rng_key = jax.random.key(seed)
    return method.init_state(
      networks,
      # 'rbg' keys compile ~10x faster than threefry for the many N(0, 0.02) draws.
      params_key=jax.random.key(seed, impl='rbg'),
      rng=jax.random.key_data(jax.random.split(rng_key, num_devices)),
      image_shape=image_shape,
      pool_size=pool_size,
      num_devices=num_devices,
    )

  abstract = jax.eval_shape(init)
  return jax.jit(init, out_shardings=state_shardings(abstract, mesh, method))()


def stored_batch_stats(state: base.State) -> dict[str, PyTree]:
  """The running statistics of the networks that have batch norms, by name ({} for
  a method without the field or networks without batch norm)."""
  stats = getattr(state, 'batch_stats', None) or {}
  return {k: v for k, v in stats.items() if _stored(v)}


def inference_generators(state: base.State, method: base.Method) -> dict[str, PyTree]:
  """The generators samples are drawn with: the weight average when kept, else the raw."""
  return state.ema or {k: state.params[k] for k in method.generators}


def make_parallel_train_step(
  networks: base.Networks,
  mesh: jax.sharding.Mesh,
  state: base.State,
) -> Callable[
  [base.State, dict[str, jax.Array]], tuple[base.State, dict[str, jax.Array]]
]:
  """The method's per-device step under `jax.shard_map` over `data`, jitted, the state
  donated."""
  method = method_of(networks)
  specs = _state_specs(state, method)
  step = jax.shard_map(
    functools.partial(method.train_step, networks=networks, axis_name=AXIS),
    mesh=mesh,
    in_specs=(specs, P(AXIS)),
    out_specs=(specs, P()),
  )
  return jax.jit(step, donate_argnums=(0,))


# --------------------------------------------------------------------------------------
# Host to device
# --------------------------------------------------------------------------------------


def device_batches(
  batches: Iterable[dict[str, np.ndarray]], mesh: jax.sharding.Mesh, prefetch: int = 2
) -> Iterator[dict[str, jax.Array]]:
  """Per-host numpy batches → global arrays sharded on `data`, `prefetch` in flight."""
  sharding = NamedSharding(mesh, P(AXIS))
  queue = collections.deque()

  def put(batch):
    return {
      k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
      for k, v in batch.items()
    }

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
      f'{num_devices}, e.g. --config.batch_size={num_devices * max(1, batch_size // num_devices)}.'
    )
