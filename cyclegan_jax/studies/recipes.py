"""The switches beyond the paper, as config overrides, and the colour transfer recipe.

Each switch is a set of config fields, all off in configs/default.py (the paper's
recipe). A combination `a+b` sets several switches' fields at once, and may start with a
method (`cut+ema`: `METHODS`, CUT's method fields from configs/cut.py on whatever base
it is applied to). `COLOUR_TRANSFER` names the switches the colour and tone transfer recipe turns
on (docs/colour_transfer.md). configs/colour_transfer.py and the recipe study
(`cyclegan_jax.studies.recipe_study`) both read them from here, so the named recipe and
the row that measures it cannot drift apart.

This module imports no JAX, so config files can import it cheaply.
"""

from __future__ import annotations

import importlib
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
  'colour_skip': (
    "the paper's generator with the input's absolute colours fed into its tanh head",
    {'model.head': 'colour_skip'},
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
  'strong_identity': (
    "identity loss 4× the paper's (λ_idt 2): holds the input's colours where it fits",
    {'loss.lambda_identity': 2.0},
  ),
  'curve_free_identity': (
    "the identity loss trains the generator's convolutions, not its colour map",
    {'loss.identity_skips_curve': True},
  ),
  'no_identity': (
    'no identity loss (λ_idt 0): the curve head already starts as the identity',
    {'loss.lambda_identity': 0.0},
  ),
  'weak_identity': (
    "identity loss a fifth of the paper's (λ_idt 0.1): a colour prior that costs ink less",
    {'loss.lambda_identity': 0.1},
  ),
  'weak_cycle': (
    'cycle weight 2 (paper 10)',
    {'loss.lambda_A': 2.0, 'loss.lambda_B': 2.0},
  ),
}

# Switches that change another switch (the colour map of the curve and colour_skip
# heads): rows only in a combination with it, so not among the study's single rows.
COMBINATION_ONLY: tuple[str, ...] = ('curve_free_identity',)

# The colour and tone transfer recipe: the switches that measured best on the photo
# looks, in SWITCHES order. Its curve head starts at the input: for colour and tone,
# not for changes of texture or content; the colour pull gives it the signal the
# critics lack there; with both, the identity loss only holds it back.
COLOUR_TRANSFER: tuple[str, ...] = ('curve', 'patch_loss', 'no_identity')


# The general recipe (configs/improved.py), a study row: among the rows run on validation
# (every look; demo size, seed 0) that clear the texture margin, the one with the fewest
# places below the paper (`looks_table --split=val --rank`), then the best mean PSNR.
IMPROVED = 'colour_skip+ema+r1+weak_identity'

# Method name → (what it is, the config module whose method fields it takes). Only those
# fields: sizes, schedule, network depth and width and data stay the base's.
METHODS: dict[str, tuple[str, str]] = {
  'cut': ('CUT, one model per direction (configs/cut.py)', 'configs.cut'),
  'fastcut': ('FastCUT, one model per direction (configs/fastcut.py)', 'configs.fastcut'),
}
# The fields that make configs/cut.py CUT rather than the paper's CycleGAN (besides every
# `cut.*` field): its step, its antialiased layouts and its losses.
METHOD_FIELDS = (
  'method',
  'pool_size',
  'model.upsample',
  'model.downsample',
  'model.downsample_D',
  'loss.gan_mode',
  'loss.lambda_gan',
  'loss.lambda_identity',
  'loss.lambda_A',  # CUT has no cycle term: weak_cycle means nothing there.
  'loss.lambda_B',
)
SEPARATOR = '+'


def method_overrides(name: str) -> dict[str, Any]:
  """The method fields of method `name`'s config (METHOD_FIELDS and every `cut.*`)."""
  if name not in METHODS:
    raise ValueError(f'Unknown method {name!r}; valid: {", ".join(METHODS)}.')
  config = importlib.import_module(METHODS[name][1]).get_config()
  fields = {f: _get(config, f) for f in METHOD_FIELDS}
  fields.update({f'cut.{k}': v for k, v in config.cut.items()})
  return fields


def _get(config: ml_collections.ConfigDict, dotted: str) -> Any:
  node = config
  for part in dotted.split('.'):
    node = node[part]
  return node


def _valid_parts() -> str:
  return (
    f'methods {", ".join(METHODS)} (first), switches {", ".join(SWITCHES)}, '
    f'joined by {SEPARATOR!r} (e.g. cut{SEPARATOR}ema)'
  )


def split_combination(name: str) -> tuple[str | None, tuple[str, ...]]:
  """'cut+ema+diffaug' → ('cut', ('ema', 'diffaug')); the method is None without one.

  Switches come back in SWITCHES order, so a combination has one name however it is
  written (`canonical`).

  Raises:
    ValueError: an unknown or repeated part, a method not first, or no part at all.
  """
  parts = name.split(SEPARATOR)
  method = parts[0] if parts[0] in METHODS else None
  switches = parts[1:] if method else parts
  bad = [p for p in switches if p not in SWITCHES]
  if not name or bad or len(set(switches)) < len(switches):
    what = f'unknown part {bad[0]!r}' if bad else 'a repeated part'
    if bad and bad[0] in METHODS:
      what = f'the method {bad[0]!r} after its first part (a method comes first)'
    raise ValueError(f'Combination {name!r} has {what}; valid: {_valid_parts()}.')
  return method, tuple(s for s in SWITCHES if s in switches)


def canonical(name: str) -> str:
  """The combination's name with its method first and its switches in SWITCHES order."""
  method, switches = split_combination(name)
  return SEPARATOR.join([*([method] if method else []), *switches])


def combination_overrides(name: str) -> dict[str, Any]:
  """The fields that combination `name` (a method and/or switches, '+'-joined) sets.

  Raises:
    ValueError: an unknown part, or two parts that set the same field: with different
      values they conflict, with the same one the second adds nothing.
  """
  method, switches = split_combination(name)
  parts = [(s, SWITCHES[s][1]) for s in switches]
  if method:
    parts.insert(0, (method, method_overrides(method)))
  fields: dict[str, Any] = {}
  owner: dict[str, str] = {}
  for part, changes in parts:
    for field, value in changes.items():
      if field in owner:
        why = (
          f'{owner[field]} and {part} both set {field} ({fields[field]!r} / {value!r})'
          if fields[field] != value
          else f'{part} adds nothing to {owner[field]} ({field}={value!r} already)'
        )
        raise ValueError(
          f'Combination {name!r}: {why}; combine parts that set different fields: '
          f'{_valid_parts()}.'
        )
      fields[field], owner[field] = value, part
  return fields


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


def recipe_config(name: str) -> ml_collections.ConfigDict:
  """The full-size config of the recipe a study row names: its method's config (or
  configs/default.py, the paper's) with its switches on.

  Raises:
    ValueError: an unknown or conflicting part (`combination_overrides`).
  """
  method, switches = split_combination(name)
  combination_overrides(name)  # Conflicts are refused here, in one line.
  module = METHODS[method][1] if method else 'configs.default'
  config = importlib.import_module(module).get_config()
  return apply(config, overrides(switches))


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
