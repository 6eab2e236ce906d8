"""What the one-way methods share: pix2pix, CUT, SimGAN and feature loss + GAN.

Each trains one generator G for the one direction `config.direction` names ('AtoB',
the default, or 'BtoA'): G reads that direction's source domain and writes its target,
and a checkpoint translates that direction only.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import flax.linen as nn

from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.methods import base
from cyclegan_jax.nets import models


def sides(direction: str) -> tuple[str, str]:
  """(the domain G reads, the domain it writes) for 'AtoB' or 'BtoA'."""
  if direction not in base.DIRECTIONS:
    raise ValueError(
      f"direction must be 'AtoB' or 'BtoA', got {direction!r}: pass --config.direction."
    )
  return direction[0], direction[-1]


def config_direction(config: Mapping[str, Any]) -> str:
  """`config.direction`, 'AtoB' when unset (configs saved before it was read)."""
  return config.get('direction') or 'AtoB'


def generators_from_config(
  model_config: Any, backend: str | None = None, *, direction: str = 'AtoB'
) -> dict[str, nn.Module]:
  """{'G': the generator from the source side to the target side of `direction`}."""
  target = sides(direction)[1]
  nc = channels_lib.domain_channels(model_config)
  return {'G': models.generator_from_config(model_config, nc[target], backend)}


def configure(method: base.Method, config: Mapping[str, Any]) -> base.Method:
  """The method for `config`'s direction: G translates that one way only."""
  direction = config_direction(config)
  sides(direction)
  return dataclasses.replace(
    method,
    directions={direction: ('G', None)},
    generator_modules=functools.partial(generators_from_config, direction=direction),
  )
