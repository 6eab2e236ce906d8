"""Training methods, by the name `config.method` gives (the official code's `--model`).

Each entry is the module that defines the method's `METHOD` (`base.Method`): its
networks, train state, per-device step, logged terms and inference generators. Modules
are imported on first use, so the config checks can list the names without JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
  from cyclegan_jax.methods import base

DEFAULT = 'cycle_gan'  # Also the method of checkpoints saved before `config.method`.
METHODS: dict[str, str] = {
  'cycle_gan': 'cyclegan_jax.methods.cycle_gan',
  'pix2pix': 'cyclegan_jax.methods.pix2pix',
  'cut': 'cyclegan_jax.methods.cut',
  'simgan': 'cyclegan_jax.methods.simgan',
  'feature_gan': 'cyclegan_jax.methods.feature_gan',
  'bigan': 'cyclegan_jax.methods.bigan',
  'cogan': 'cyclegan_jax.methods.cogan',
}


def name_of(config: Mapping[str, Any]) -> str:
  """The method a config (or a checkpoint's saved config) names; DEFAULT where none."""
  return config.get('method') or DEFAULT


def get(name: str) -> base.Method:
  """The registered method `name`.

  Raises:
    ValueError: `name` is not registered (the message lists the registered ones).
  """
  if name not in METHODS:
    raise ValueError(
      f'Unknown method {name!r}: config.method must be one of {", ".join(METHODS)}.'
    )
  return importlib.import_module(METHODS[name]).METHOD


def of_config(config: Mapping[str, Any]) -> base.Method:
  """The method a config (or a checkpoint's saved config) names, set up as it says."""
  return get(name_of(config)).configure(config)
