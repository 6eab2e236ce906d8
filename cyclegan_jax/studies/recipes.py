"""The switches beyond the paper, as config overrides, and the colour transfer recipe.

Each switch is a set of config fields, all off in configs/default.py (the paper's
recipe). `COLOUR_TRANSFER` names the switches the colour and tone transfer recipe turns
on (docs/colour_transfer.md). configs/colour_transfer.py and the recipe study
(`cyclegan_jax.studies.recipe_study`) both read them from here, so the named recipe and
the row that measures it cannot drift apart.

This module imports no JAX, so config files can import it cheaply.
"""

from __future__ import annotations

from typing import Any, Sequence

import ml_collections

# Switch name → (what it does, the config fields it sets).
SWITCHES: dict[str, tuple[str, dict[str, Any]]] = {
  'resize_conv': (
    'upsampling by nearest-neighbour resize then 3×3 conv',
    {'model.upsample': 'resize_conv'},
  ),
  'curve': (
    'residual generators with a per-pixel colour map from the absolute input',
    {'model.head': 'curve'},
  ),
  'ema': (
    "EMA of the generators' weights (~100-step span, from step 100) for evaluation",
    {'ema.decay': 0.99, 'ema.start_step': 100},
  ),
  'diffaug': (
    'DiffAugment (translation, cutout, colour) of what the critics see',
    {'augment.policy': 'translation,cutout,color'},
  ),
  'spectral_norm': (
    "spectral normalisation of the critics' convolutions",
    {'model.spectral_norm_D': True},
  ),
  'plain_critics': (
    'critics without instance norm, so they see global colour and tone',
    {'model.norm_D': 'none'},
  ),
  'r1': ('R1 gradient penalty on real images, γ = 0.1', {'loss.r1_gamma': 0.1}),
  'patch_loss': (
    "sliced Wasserstein pull of each fake's colours towards its domain's (16-image history)",
    {'loss.lambda_swd': 30.0, 'loss.swd_bank': 16},
  ),
  'no_identity': (
    'no identity loss (λ_idt 0): the curve head already starts as the identity',
    {'loss.lambda_identity': 0.0},
  ),
}

# The colour and tone transfer recipe: the switches that measured best on the photo
# looks, in SWITCHES order. Its curve head starts at the input: for colour and tone,
# not for changes of texture or content; the colour pull gives it the signal the
# critics lack there; with both, the identity loss only holds it back.
COLOUR_TRANSFER: tuple[str, ...] = ('curve', 'patch_loss', 'no_identity')


def check_switches(names: Sequence[str]) -> None:
  """Raises ValueError, listing the valid names, for a name that is not a switch."""
  for name in names:
    if name not in SWITCHES:
      raise ValueError(f'Unknown switch {name!r}; valid: {", ".join(SWITCHES)}.')


def overrides(names: Sequence[str]) -> dict[str, Any]:
  """The config fields that switches `names` set, merged (a later one wins)."""
  check_switches(names)
  fields: dict[str, Any] = {}
  for name in names:
    fields.update(SWITCHES[name][1])
  return fields


def apply(
  config: ml_collections.ConfigDict, fields: dict[str, Any]
) -> ml_collections.ConfigDict:
  """Sets dotted `fields` (e.g. {'model.upsample': ...}) on `config` in place.

  Raises:
    KeyError: a field `config` does not have (a locked config refuses new fields).
  """
  for dotted, value in fields.items():
    *parents, leaf = dotted.split('.')
    node = config
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config
