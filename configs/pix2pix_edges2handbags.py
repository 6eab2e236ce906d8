"""pix2pix on edges2handbags (edges → handbag photo).

137k pairs; the pix2pix paper trains 15 epochs at batch 4 (8 + 7 of decay here).

  python -m cyclegan_jax.main --config=configs/pix2pix_edges2handbags.py --workdir=/tmp/edges2handbags \
      --config.dataset=folder:/data/edges2handbags  # default: folder:datasets/edges2handbags

The folder is the official aligned layout (train/, val/, test/ of A|B images), as the
official datasets/download_pix2pix_dataset.sh edges2handbags unpacks it.
"""

from configs import pix2pix


def get_config():
  """Returns the locked config."""
  return pix2pix.for_dataset(
    'folder:datasets/edges2handbags', direction='AtoB', batch_size=4, epochs=15
  )
