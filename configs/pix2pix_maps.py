"""pix2pix on maps (aerial photo → map).

A is the aerial photo, B the map: AtoB is the zoo's sat2map (map2sat is
--config.direction=BtoA); 1096 pairs, 200 epochs at batch 1.

  python -m cyclegan_jax.main --config=configs/pix2pix_maps.py --workdir=/tmp/maps \
      --config.dataset=folder:/data/maps  # default: folder:datasets/maps

The folder is the official aligned layout (train/, val/, test/ of A|B images), as the
official datasets/download_pix2pix_dataset.sh maps unpacks it.
"""

from configs import pix2pix


def get_config():
  """Returns the locked config."""
  return pix2pix.for_dataset(
    'folder:datasets/maps', direction='AtoB', batch_size=1, epochs=200
  )
