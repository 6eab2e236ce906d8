"""The no-download CoGAN demo: built-in synthetic domains at CPU size.

  python -m cyclegan_jax.main --config=configs/demo_cogan.py --workdir=/tmp/cogan_demo
  python -m cyclegan_jax.main --config=configs/demo_cogan.py --workdir=/tmp/cogan_demo \
      --mode=eval

`synthetic:shapes` (warm discs on a light background as A, striped squares on a dark
one as B; the test split has the true translation) at 32 px: CoGAN's coupled networks
at ngf 16 / ndf 16, z of 32, batch 32, 500 steps at a fixed rate; translation inverts
z with 200 Adam steps from 4 draws per image.

Measured on 2 shared CPU cores: ~16 minutes of training, 4-8 minutes of evaluation; at
step 500 PSNR 12-14 dB and SSIM ~0.43-0.48 against the ground truth (the untranslated
input ~3.2 dB, 0.03); trained on to 1000 steps the critics win and PSNR falls to
9-10 dB (docs/cogan.md).
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
  config.num_train_steps = 500  # Longer, the critics win (docs/cogan.md).
  config.cogan.nz = 32
  config.cogan.ngf = 16
  config.cogan.ndf = 16
  config.cogan.invert_steps = 200
  config.log_every_steps = 100
  config.sample_every_steps = 250
  config.checkpoint_every_steps = 250
  config.eval.max_images = 32
  return config
