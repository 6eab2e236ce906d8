"""CycleGAN on TFDS cycle_gan/horse2zebra: horses <-> zebras (ImageNet).

  python -m cyclegan_jax.main --config=configs/horse2zebra.py --workdir=/tmp/horse2zebra

The paper's 256 px setting and schedule (100 + 100 epochs, Adam 2e-4, batch 1, pool 50);
identity weight 0.5, the official code's default.
Needs the TFDS download (or `--config.dataset=folder:PATH` with the official layout).
Expected: translations like the paper's horse2zebra figures after the full 200 epochs.
"""

from configs import default


def get_config():
  return default.for_dataset('cycle_gan/horse2zebra', lambda_identity=0.5)
