"""The pieces every method's per-device step is made of: replicas, pools, keys, EMA.

A step runs per device inside `jax.shard_map` over the one-axis mesh `AXIS` (as under
`pmap`): parameters are replicated, per-device state (pools, keys) arrives as this
device's slice of a global array sharded on `AXIS`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from cyclegan_jax.methods import image_pool

PyTree = Any
AXIS = 'data'


def replica_ops(
  axis_name: str | None,
) -> tuple[Callable[[PyTree], PyTree], Callable[[PyTree], PyTree]]:
  """(mean, local): the mean over `axis_name`, and per-device copies to differentiate.

  Differentiate this device's loss w.r.t. a per-device copy of the replicated
  parameters: without the cast, autodiff under shard_map would psum the gradients
  itself (the transpose of the implicit invariant->varying cast), giving the sum over
  devices rather than pmap's per-device gradients that `mean` then averages. With
  `axis_name` None (a plain single-device step) both are the identity.
  """
  if not axis_name:
    identity = lambda x: x
    return identity, identity
  mean = lambda x: jax.lax.pmean(x, axis_name)
  local = lambda tree: jax.tree.map(
    lambda x: jax.lax.pcast(x, axis_name, to='varying'), tree
  )
  return mean, local


def apply_updates(
  tx: optax.GradientTransformation,
  params: dict[str, PyTree],
  opt_state: optax.OptState,
  grads: dict[str, PyTree],
) -> tuple[dict[str, PyTree], optax.OptState]:
  """One optimiser update of `params` with `grads`."""
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def scaled_schedule(schedule: optax.Schedule, scale: float) -> optax.Schedule:
  """`schedule` times `scale` (the critics' rate under TTUR); `schedule` itself at 1."""
  if scale == 1.0:
    return schedule
  return lambda count: schedule(count) * scale


def per_device_copies(pools: PyTree, num_devices: int) -> PyTree:
  """One copy of each pool per device, as global arrays to shard on `data`.

  Stacked on a leading device axis, flattened for the images: each device's shard of
  `images` is then its own [size, H, W, C] buffer (and of `count` its own counter).
  """
  pools = jax.tree.map(lambda x: jnp.stack([x] * num_devices), pools)
  return jax.tree.map(
    lambda x: x.reshape((num_devices * x.shape[1],) + x.shape[2:]) if x.ndim > 1 else x,
    pools,
  )


def local_pool(pool: image_pool.ImagePool) -> image_pool.ImagePool:
  """This device's shard of a pool: its `count` arrives as a length-1 vector."""
  return pool.replace(count=pool.count[0])


def global_pool(pool: image_pool.ImagePool) -> image_pool.ImagePool:
  """The inverse of `local_pool`, for the step's output."""
  return pool.replace(count=pool.count[None])


def stream_key(step: jax.Array, rng: jax.Array, axis_name: str | None, stream: int):
  """This step's and device's key of one random stream (`stream` folded into `rng[0]`).

  Step and device index are folded in explicitly: keys restarted from the seed (a resume
  on another device count) still give every step and device its own draws.
  """
  key = jax.random.fold_in(jax.random.wrap_key_data(rng[0]), stream)
  key = jax.random.fold_in(key, step)
  return jax.random.fold_in(key, jax.lax.axis_index(axis_name) if axis_name else 0)


def initial_ema(params: dict[str, PyTree], names: Sequence[str]) -> dict[str, PyTree]:
  """The average of networks `names` before any step: a copy of their parameters."""
  return {k: jax.tree.map(jnp.copy, params[k]) for k in names}


def update_ema(
  ema: dict[str, PyTree],
  params: dict[str, PyTree],
  step: jax.Array,
  *,
  decay: float,
  start_step: int = 0,
) -> dict[str, PyTree]:
  """ema ← decay·ema + (1 − decay)·params after update number `step` (1-based); an
  empty `ema` (no average kept) stays empty.

  Up to `start_step` the average copies the parameters: the early, fast-changing
  weights would otherwise linger in it for ~1/(1 − decay) steps.
  """
  d = jnp.where(step <= start_step, 0.0, decay).astype(jnp.float32)
  return jax.tree.map(
    lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema, {k: params[k] for k in ema}
  )


def _call_arguments(module: Any) -> frozenset[str]:
  """The keyword arguments of a Linen module's `__call__`."""
  return frozenset(inspect.signature(type(module).__call__).parameters)


def apply_net(
  module: Any,
  params: PyTree,
  stats: PyTree,
  x: jax.Array,
  *,
  batch_statistics: bool,
  dropout_key: jax.Array | None = None,
  update_stats: bool = False,
) -> tuple[jax.Array, PyTree]:
  """(module(x), its batch norms' running statistics after the call).

  Args:
    module: a network; its `__call__` may take `use_running_average` (batch norm) and
      `deterministic` (dropout); those it lacks are not passed.
    params: its parameters.
    stats: its 'batch_stats' ({} for a network without batch norm).
    x: the input.
    batch_statistics: normalise with the statistics of `x`'s batch (train mode, and
      the reference's test-time default) rather than the running ones.
    dropout_key: dropout on with masks from this key; None: no dropout.
    update_stats: with `batch_statistics`, return the running statistics updated by
      this batch (a train-mode forward); otherwise `stats` comes back unchanged.
  """
  arguments = _call_arguments(module)
  kwargs: dict[str, Any] = {}
  if 'use_running_average' in arguments:
    kwargs['use_running_average'] = not batch_statistics
  if 'deterministic' in arguments:
    kwargs['deterministic'] = dropout_key is None
  if dropout_key is not None and 'deterministic' in arguments:
    kwargs['rngs'] = {'dropout': dropout_key}
  variables = {'params': params, **({'batch_stats': stats} if stats else {})}
  if update_stats and batch_statistics and stats:
    y, mutated = module.apply(variables, x, mutable=['batch_stats'], **kwargs)
    return y, mutated['batch_stats']
  return module.apply(variables, x, **kwargs), stats
