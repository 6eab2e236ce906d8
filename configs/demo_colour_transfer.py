"""The no-download demo (configs/demo.py) with the colour transfer recipe's switches on.

  python -m cyclegan_jax.main --config=configs/demo_colour_transfer.py \
      --workdir=/tmp/demo_colour

The switches of `cyclegan_jax.studies.recipes.COLOUR_TRANSFER`, as the recipe study
measures them (docs/colour_transfer.md has the comparison with configs/demo.py).
"""

from configs import colour_transfer
from configs import demo


def get_config():
  """Returns the demo config with the recipe's switches on."""
  return colour_transfer.switch_on(demo.get_config())
