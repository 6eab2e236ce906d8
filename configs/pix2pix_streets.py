"""pix2pix on the built-in labels↔photo benchmark `synthetic:streets`, at CPU size.

  python -m cyclegan_jax.main --config=configs/pix2pix_streets.py --workdir=/tmp/streets
  python -m cyclegan_jax.main --config=configs/pix2pix_streets.py --workdir=/tmp/streets \
      --mode=eval
  python -m cyclegan_jax.evaluation.fcn_score --dataset=synthetic:streets \
      --images=/tmp/streets/eval/step_400/images/BtoA

A is the photo and B the Cityscapes colour label map, as in the official cityscapes
layout; BtoA is labels→photo (the papers' Table 2, scored by `fcn_score`), AtoB
(`--config.direction=AtoB`) photo→labels (Table 3, `fcn_score --task=photo_to_labels`).
The demo's small pix2pix (unet_128 at ngf 16, batch 4, 400 steps) at 128 px.
"""

import ml_collections

from configs import demo_pix2pix


def get_config() -> ml_collections.ConfigDict:
  """Returns the streets pix2pix config."""
  config = demo_pix2pix.get_config()
  config.dataset = 'synthetic:streets'
  config.direction = 'BtoA'
  config.load_size = 128  # The scenes are drawn at this size; no crop jitter.
  config.crop_size = 128
  return config
