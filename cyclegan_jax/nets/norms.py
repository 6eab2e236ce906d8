"""PyTorch's BatchNorm2d in Flax, running statistics included.

`flax.linen.BatchNorm` updates the running variance with the biased batch variance;
PyTorch uses the unbiased one (and normalises with the biased one), so converted
official weights and running statistics only reproduce the reference with this module.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cyclegan_jax.nets import spec

Dtype = Any


def batch_norm_scale_init(
  key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32
):
  """The reference's `init_weights` for BatchNorm2d weights: N(1, 0.02)."""
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def batch_moments(
  x: jax.Array, axis_name: str | None = None
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(mean, biased variance, element count) per channel of an NHWC batch, in float32.

  With `axis_name` (inside `shard_map` / `pmap`) the moments are those of the global
  batch: the per-device means are averaged, then the squared deviations from the
  global mean. Every device must hold the same number of elements.
  """
  x = x.astype(jnp.float32)
  axes = tuple(range(x.ndim - 1))
  count = 1
  for a in axes:
    count *= x.shape[a]
  mean = jnp.mean(x, axis=axes)
  if axis_name is not None:
    mean = jax.lax.pmean(mean, axis_name)
  # Two passes (deviations from the mean): no cancellation in E[x²] - E[x]².
  var = jnp.mean(jnp.square(x - mean), axis=axes)
  if axis_name is not None:
    var = jax.lax.pmean(var, axis_name)
    count = count * jax.lax.psum(1, axis_name)
  return mean, var, jnp.asarray(count, jnp.float32)


class BatchNorm(nn.Module):
  """`nn.BatchNorm2d(affine=True, track_running_stats=True)` of PyTorch, NHWC.

  Train mode (`use_running_average=False`) normalises with the batch statistics
  (biased variance) and, when the 'batch_stats' collection is mutable, updates
  running = (1 - momentum) * running + momentum * batch with the unbiased batch
  variance, as PyTorch does. Eval mode normalises with the running statistics.
  Statistics are float32; the output is in `dtype`.

  Attributes:
    momentum: PyTorch's momentum (the weight of the new batch).
    epsilon: added to the variance.
    dtype: compute dtype of the output.
    axis_name: a mapped axis whose devices' batches form one global batch (the
      reference's `--norm syncbatch`); None: this device's batch only.
  """

  momentum: float = spec.BN_MOMENTUM
  epsilon: float = spec.NORM_EPS
  dtype: Dtype = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool = True) -> jax.Array:
    features = x.shape[-1]
    scale = self.param('scale', batch_norm_scale_init, (features,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
    ra_mean = self.variable(
      'batch_stats', 'mean', lambda: jnp.zeros((features,), jnp.float32)
    )
    ra_var = self.variable(
      'batch_stats', 'var', lambda: jnp.ones((features,), jnp.float32)
    )
    if use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      mean, var, count = batch_moments(x, self.axis_name)
      if not self.is_initializing() and self.is_mutable_collection('batch_stats'):
        unbiased = var * count / jnp.maximum(count - 1.0, 1.0)
        m = self.momentum
        ra_mean.value = (1.0 - m) * ra_mean.value + m * mean
        ra_var.value = (1.0 - m) * ra_var.value + m * unbiased
    mul = scale * jax.lax.rsqrt(var + self.epsilon)
    y = (x.astype(jnp.float32) - mean) * mul + bias
    return y.astype(self.dtype)


def instance_norm(dtype: Dtype, name: str | None = None) -> nn.Module:
  """`nn.InstanceNorm2d(affine=False, track_running_stats=False)`, stats in float32."""
  return nn.InstanceNorm(
    epsilon=spec.NORM_EPS,
    use_bias=False,
    use_scale=False,
    use_fast_variance=False,
    dtype=dtype,
    name=name,
  )
