"""The custom-VJP forms inside `jax.shard_map`: inputs cast to "varying" where autodiff
sees the cast (`common_variance`)."""

from __future__ import annotations

import jax


def _varying_axes(x: jax.Array) -> frozenset:
  """The manual mesh axes that x varies over inside `jax.shard_map` (empty outside)."""
  return getattr(getattr(jax.typeof(x), 'mat', None), 'varying', frozenset())


def _vary_like(x: jax.Array, axes: frozenset) -> jax.Array:
  """Marks x as varying over `axes` too (a no-op outside `jax.shard_map`)."""
  missing = tuple(axis for axis in axes if axis not in _varying_axes(x))
  return jax.lax.pcast(x, missing, to='varying') if missing else x


def common_variance(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, jax.Array]:
  """x and kernel, both varying over the manual axes either varies over.

  Inside shard_map a replicated kernel meets a per-device batch. Ordinary ops cast the
  kernel to "varying" implicitly, and that cast's transpose sums its gradient over the
  devices; a custom_vjp must return the kernel's cotangent with the kernel's own type,
  so the cast has to happen before it, where autodiff sees it.
  """
  axes = _varying_axes(x) | _varying_axes(kernel)
  return _vary_like(x, axes), _vary_like(kernel, axes)
