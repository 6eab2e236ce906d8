"""The old name of the colour and tone transfer recipe (configs/colour_transfer.py).

  python -m cyclegan_jax.main --config=configs/improved.py --workdir=DIR   # old command

A general improved recipe has not been chosen yet; this name only keeps old commands
and `configs.improved.switch_on` working.
"""

import ml_collections

from configs import colour_transfer

switch_on = colour_transfer.switch_on


def get_config() -> ml_collections.ConfigDict:
  """Returns the colour transfer recipe's config."""
  return colour_transfer.get_config()
