"""CycleGAN on TFDS cycle_gan/maps: Google maps <-> aerial photos.

  python -m cyclegan_jax.main --config=configs/maps.py --workdir=/tmp/maps

The paper's 256 px setting and schedule (100 + 100 epochs, Adam 2e-4, batch 1, pool 50);
no identity term: maps <-> photos must change every colour (paper §5.1).
Needs the TFDS download (or `--config.dataset=folder:PATH` with the official layout).
Expected: translations like the paper's maps figures after the full 200 epochs.
"""

from configs import default


def get_config():
  return default.for_dataset('cycle_gan/maps', lambda_identity=0.0)
