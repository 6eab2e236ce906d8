"""The no-download pix2pix demo: built-in synthetic pairs at CPU size.

  python -m cyclegan_jax.main --config=configs/demo_pix2pix.py --workdir=/tmp/p2p_demo
  python -m cyclegan_jax.main --config=configs/demo_pix2pix.py --workdir=/tmp/p2p_demo \
      --mode=eval

`synthetic:shapes` as pairs: each scene drawn as warm discs on a light background (A)
and as striped squares on a dark background (B). The official pix2pix networks (U-Net
with batch norm and dropout, the PatchGAN on (A, B), vanilla GAN + 100 × L1) made small:
unet_128 at ngf 16 on 128 px crops, batch 4, a constant rate for half the steps, then
linear decay.
"""

import ml_collections

from configs import pix2pix


def get_config() -> ml_collections.ConfigDict:
  """Returns the pix2pix demo config."""
  config = pix2pix.get_config()
  config.dataset = 'synthetic:shapes'
  config.load_size = 142
  config.crop_size = 128
  config.batch_size = 4
  config.num_train_steps = 400
  config.num_epochs = 1  # With num_train_steps: constant for half the run, then decay.
  config.num_epochs_decay = 1
  config.lr_schedule_granularity = 'step'
  config.model.netG = 'unet_128'
  config.model.ngf = 16
  config.model.ndf = 16
  config.log_every_steps = 50
  config.sample_every_steps = 200
  config.checkpoint_every_steps = 200
  config.eval.max_images = 32
  return config
