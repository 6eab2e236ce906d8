"""pix2pix on facades (labels → photo).

The official scripts/train_pix2pix.sh: A is the photo, B the label map, so
--direction BtoA; 400 pairs, 200 epochs at batch 1 (100 + 100 of decay).

  python -m cyclegan_jax.main --config=configs/pix2pix_facades.py --workdir=/tmp/facades \
      --config.dataset=folder:/data/facades  # default: folder:datasets/facades

The folder is the official aligned layout (train/, val/, test/ of A|B images), as the
official datasets/download_pix2pix_dataset.sh facades unpacks it.
"""

from configs import pix2pix


def get_config():
  """Returns the locked config."""
  return pix2pix.for_dataset(
    'folder:datasets/facades', direction='BtoA', batch_size=1, epochs=200
  )
