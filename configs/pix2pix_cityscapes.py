"""pix2pix on cityscapes (labels → street photo).

A is the photo, B the label map: BtoA translates labels to photos, as the
pix2pix paper's cityscapes results; 2975 pairs, 200 epochs at batch 1.

  python -m cyclegan_jax.main --config=configs/pix2pix_cityscapes.py --workdir=/tmp/cityscapes \
      --config.dataset=folder:/data/cityscapes  # default: folder:datasets/cityscapes

The folder is the official aligned layout (train/, val/, test/ of A|B images), as the
official datasets/download_pix2pix_dataset.sh cityscapes unpacks it.
"""

from configs import pix2pix


def get_config():
  """Returns the locked config."""
  return pix2pix.for_dataset(
    'folder:datasets/cityscapes', direction='BtoA', batch_size=1, epochs=200
  )
