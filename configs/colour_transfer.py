"""The colour and tone transfer recipe: the paper's CycleGAN made to change colours only.

  python -m cyclegan_jax.studies.photo_looks --output=/tmp/photo_looks
  python -m cyclegan_jax.main --config=configs/colour_transfer.py \
      --workdir=/tmp/colour_transfer --config.dataset=folder:/tmp/photo_looks/colour \
      --config.load_size=64 --config.crop_size=64

Everything is `configs/default.py` (the paper's recipe) except the switches named in
`cyclegan_jax.studies.recipes.COLOUR_TRANSFER` (the same set the recipe study measures
as its `colour_transfer` row; docs/colour_transfer.md has the table): the generators add
a per-pixel colour map and a learned change to their input, starting as the identity;
a sliced Wasserstein pull moves their colour histogram towards the other domain's; and
there is no identity loss. Good for colour and tone looks (a grade, a film look, a
faded photo and its restoration); not for changes of texture or content, where the
generators stay near their input. Keep the paper's recipe (configs/default.py) for
those.
"""

import ml_collections

from configs import default
from cyclegan_jax.studies import recipes


def switch_on(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Turns on the recipe's switches in `config`, in place; the rest is left as it is."""
  return recipes.apply(config, recipes.overrides(recipes.COLOUR_TRANSFER))


def get_config() -> ml_collections.ConfigDict:
  """Returns the default config with the recipe's switches on."""
  return switch_on(default.get_config())
