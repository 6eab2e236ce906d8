"""The no-download CoGAN demo: built-in synthetic domains at CPU size.

  python -m cyclegan_jax.main --config=configs/demo_cogan.py --workdir=/tmp/cogan_demo
  python -m cyclegan_jax.main --config=configs/demo_cogan.py --workdir=/tmp/cogan_demo \
      --mode=eval

`synthetic:shapes` (warm discs on a light background as A, striped squares on a dark
one as B; the test split has the true translation) at 32 px: CoGAN's coupled networks
at ngf 16 / ndf 16, z of 32, batch 32, 1000 steps at a fixed rate; translation inverts
z with 200 Adam steps from 4 draws per image.

Measured on 2 shared CPU cores: 32 minutes of training, 8 minutes of evaluation; at
step 1000 PSNR ~9-10 dB against the ground truth (the untranslated input ~3.2 dB),
the critics ahead of the generators from step ~300 (docs/cogan.md).
"""

import ml_collections

from configs import cogan


def get_config() -> ml_collections.ConfigDict:
  """Returns the CoGAN demo config."""
  config = cogan.get_config()
  config.dataset = 'synthetic:shapes'
  config.load_size = 36
  config.crop_size = 32
  config.batch_size = 32
  config.num_train_steps = 1000
  config.cogan.nz = 32
  config.cogan.ngf = 16
  config.cogan.ndf = 16
  config.cogan.invert_steps = 200
  config.log_every_steps = 100
  config.sample_every_steps = 500
  config.checkpoint_every_steps = 500
  config.eval.max_images = 32
  return config
