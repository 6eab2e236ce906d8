"""pix2pix on edges2shoes (edges → shoe photo).

50k pairs; the pix2pix paper trains 15 epochs at batch 4 (here 8 at the
initial rate, then 7 of linear decay, as the official code splits its runs).

  python -m cyclegan_jax.main --config=configs/pix2pix_edges2shoes.py --workdir=/tmp/edges2shoes \
      --config.dataset=folder:/data/edges2shoes  # default: folder:datasets/edges2shoes

The folder is the official aligned layout (train/, val/, test/ of A|B images), as the
official datasets/download_pix2pix_dataset.sh edges2shoes unpacks it.
"""

from configs import pix2pix


def get_config():
  """Returns the locked config."""
  return pix2pix.for_dataset(
    'folder:datasets/edges2shoes', direction='AtoB', batch_size=4, epochs=15
  )
