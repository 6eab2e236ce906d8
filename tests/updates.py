"""Comparing two training steps through their updates, with SGD standing in for Adam."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import optax


def with_sgd(networks):
  """`networks` with plain SGD (rate 1) for every optimiser: the update is the gradient.

  Adam's first step is lr·g/(|g| + 1e-8): for the biases before instance norms, whose
  gradients are float noise (~1e-10), it turns summation-order noise into ±lr, so the
  steps are compared through their gradients instead.
  """
  sgd = optax.sgd(1.0)
  names = [f.name for f in dataclasses.fields(networks) if f.name.startswith('tx_')]
  return dataclasses.replace(networks, **{name: sgd for name in names})


def assert_updates_close(got, want, before, rtol=1e-3):
  """The updates (got - before, want - before) of each network agree to `rtol` of that
  network's largest update (the noise-level leaves included)."""
  for name in want:
    g_d = jax.tree.map(
      lambda a, b: np.asarray(a) - np.asarray(b), got[name], before[name]
    )
    w_d = jax.tree.map(
      lambda a, b: np.asarray(a) - np.asarray(b), want[name], before[name]
    )
    scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(w_d))
    assert scale > 0, name
    for (path, g), (_, w) in zip(
      jax.tree_util.tree_leaves_with_path(g_d), jax.tree_util.tree_leaves_with_path(w_d)
    ):
      np.testing.assert_allclose(
        g, w, atol=rtol * scale, rtol=0, err_msg=f'{name}{jax.tree_util.keystr(path)}'
      )
