"""pix2pix on night2day (night → day).

A is the night photo, B the day one: AtoB is night → day (the zoo's day2night
is --config.direction=BtoA); the pix2pix paper trains 17 epochs at batch 4
(9 + 8 of decay here).

  python -m cyclegan_jax.main --config=configs/pix2pix_night2day.py --workdir=/tmp/night2day \
      --config.dataset=folder:/data/night2day  # default: folder:datasets/night2day

The folder is the official aligned layout (train/, val/, test/ of A|B images), as the
official datasets/download_pix2pix_dataset.sh night2day unpacks it.
"""

from configs import pix2pix


def get_config():
  """Returns the locked config."""
  return pix2pix.for_dataset(
    'folder:datasets/night2day', direction='AtoB', batch_size=4, epochs=17
  )
