"""CUT's PatchNCE pieces (Park et al. 2020): patch sampling, the MLP heads, the loss.

As the official `PatchSampleF` and `PatchNCELoss` (taesungp/contrastive-unpaired-
translation): each encoder feature map is sampled at `num_patches` positions (the same
positions for every image of the batch, and for the query and key maps of a layer),
projected by a two-layer MLP per layer and L2-normalised; each query patch's positive is
the key patch at its position, its negatives the other sampled key patches of the same
image (or of the whole batch).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# The value the official loss writes on a query's own position among its negatives.
MASKED_LOGIT = -10.0
# The official `Normalize` adds this to the norm before dividing.
NORM_EPS = 1e-7


class PatchHeads(nn.Module):
  """One MLP per feature layer: Linear(C, nc), ReLU, Linear(nc, nc) (`mlp_sample`).

  Attributes:
    channels: each layer's feature channels, in order.
    features: nc (the official `netF_nc`, 256).
  """

  channels: tuple[int, ...]
  features: int = 256

  @nn.compact
  def __call__(self, samples: Sequence[jax.Array]) -> list[jax.Array]:
    out = []
    for i, x in enumerate(samples):
      h = nn.Dense(self.features, name=f'mlp_{i}_0')(x)
      out.append(nn.Dense(self.features, name=f'mlp_{i}_2')(nn.relu(h)))
    return out

  def init_params(self, key: jax.Array) -> dict:
    """Parameters for `channels` (the official heads are built at the first batch)."""
    dummy = [jnp.zeros((1, c), jnp.float32) for c in self.channels]
    return self.init(key, dummy)['params']


def head_param_count(channels: int, features: int = 256) -> int:
  """Parameters of one MLP head on `channels` input channels."""
  return channels * features + features + features * features + features


def l2_normalize(x: jax.Array) -> jax.Array:
  """The official `Normalize(2)`: x / (‖x‖₂ + 1e-7) along the last axis."""
  return x / (jnp.sqrt(jnp.sum(jnp.square(x), axis=-1, keepdims=True)) + NORM_EPS)


def patch_ids(key: jax.Array, feats: Sequence[jax.Array], num_patches: int) -> list:
  """Per layer, `min(num_patches, H·W)` distinct random positions of its H×W map."""
  keys = jax.random.split(key, len(feats))
  ids = []
  for k, f in zip(keys, feats):
    positions = f.shape[1] * f.shape[2]
    ids.append(jax.random.permutation(k, positions)[: min(num_patches, positions)])
  return ids


def sample(feat: jax.Array, ids: jax.Array) -> jax.Array:
  """(N, H, W, C) features at the positions `ids` (row-major) → (N·len(ids), C), image
  by image, as the official `feat_reshape[:, patch_id, :].flatten(0, 1)`."""
  n, h, w, c = feat.shape
  return feat.reshape(n, h * w, c)[:, ids].reshape(-1, c)


def patch_nce(
  q: jax.Array,
  k: jax.Array,
  *,
  batch: int,
  temperature: float,
  all_negatives: bool = False,
  axis_name: str | None = None,
) -> jax.Array:
  """The official `PatchNCELoss`: the cross-entropy of each query row, (M,).

  Args:
    q: (batch·P, D) normalised query patches, image by image.
    k: the key patches, same layout; no gradient flows into them.
    batch: images in `q` (this device's).
    temperature: τ (`nce_T`).
    all_negatives: the negatives of a query are every key patch of the batch (the
      official `nce_includes_all_negatives_from_minibatch`); over `axis_name` the keys
      of every device's images are gathered, so the batch is the global one.
    axis_name: the mapped axis of the devices (None: one device).
  """
  k = jax.lax.stop_gradient(k)
  high = jax.lax.Precision.HIGHEST
  l_pos = jnp.sum(q * k, axis=-1, keepdims=True)
  if all_negatives:
    keys = jax.lax.all_gather(k, axis_name, tiled=True) if axis_name else k
    offset = jax.lax.axis_index(axis_name) * q.shape[0] if axis_name else 0
    l_neg = jnp.matmul(q, keys.T, precision=high)
    own = jnp.arange(q.shape[0])[:, None] + offset == jnp.arange(keys.shape[0])[None]
    l_neg = jnp.where(own, MASKED_LOGIT, l_neg)
  else:
    dim = q.shape[-1]
    qb, kb = q.reshape(batch, -1, dim), k.reshape(batch, -1, dim)
    l_neg = jnp.einsum('bpd,bqd->bpq', qb, kb, precision=high)
    own = jnp.eye(qb.shape[1], dtype=bool)[None]
    l_neg = jnp.where(own, MASKED_LOGIT, l_neg).reshape(-1, qb.shape[1])
  logits = jnp.concatenate([l_pos, l_neg], axis=1) / temperature
  return -jax.nn.log_softmax(logits, axis=-1)[:, 0]


def init_kernels(params: dict, key: jax.Array, init_type: str, gain: float) -> dict:
  """Every conv / dense kernel of `params` redrawn as the official `init_weights`.

  'normal': N(0, gain); 'xavier': N(0, gain·√(2 / (fan_in + fan_out))) with the
  receptive field in both fans (torch's `xavier_normal_`). Biases keep their zeros. A
  kernel the module starts at zero (the curve head's) stays zero.
  """
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  keys = iter(jax.random.split(key, max(len(flat), 1)))

  def redraw(path, leaf):
    k = next(keys)
    if getattr(path[-1], 'key', None) != 'kernel' or leaf.ndim < 2:
      return leaf
    receptive = 1
    for size in leaf.shape[:-2]:
      receptive *= size
    if init_type == 'xavier':
      std = gain * (2.0 / (receptive * (leaf.shape[-2] + leaf.shape[-1]))) ** 0.5
    else:
      std = gain
    drawn = std * jax.random.normal(k, leaf.shape, leaf.dtype)
    return jnp.where(jnp.any(leaf != 0), drawn, leaf)

  return jax.tree_util.tree_map_with_path(redraw, params)
