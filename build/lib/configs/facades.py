"""CycleGAN on TFDS cycle_gan/facades: architectural label maps <-> facade photos (CMP Facades).

  python -m cyclegan_jax.main --config=configs/facades.py --workdir=/tmp/facades

The paper's 256 px setting and schedule (100 + 100 epochs, Adam 2e-4, batch 1, pool 50);
no identity term: labels <-> photos must change every colour (paper §5.1).
Needs the TFDS download (or `--config.dataset=folder:PATH` with the official layout).
Expected: translations like the paper's facades figures after the full 200 epochs.
"""

from configs import default


def get_config():
  return default.for_dataset('cycle_gan/facades', lambda_identity=0.0)
