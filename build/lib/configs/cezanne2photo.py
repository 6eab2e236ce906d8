"""CycleGAN on TFDS cycle_gan/cezanne2photo: cezanne paintings <-> landscape photos.

  python -m cyclegan_jax.main --config=configs/cezanne2photo.py --workdir=/tmp/cezanne2photo

The paper's 256 px setting and schedule (100 + 100 epochs, Adam 2e-4, batch 1, pool 50);
identity 0.5: the paper (§5.2) adds it for painting <-> photo to keep colours.
Needs the TFDS download (or `--config.dataset=folder:PATH` with the official layout).
Expected: translations like the paper's cezanne2photo figures after the full 200 epochs.
"""

from configs import default


def get_config():
  return default.for_dataset('cycle_gan/cezanne2photo', lambda_identity=0.5)
