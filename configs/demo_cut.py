"""The no-download CUT demo: built-in synthetic domains at CPU size.

  python -m cyclegan_jax.main --config=configs/demo_cut.py --workdir=/tmp/cut_demo
  python -m cyclegan_jax.main --config=configs/demo_cut.py --workdir=/tmp/cut_demo \
      --mode=eval

`synthetic:shapes`: warm discs on a light background (A) to striped squares on a dark
background (B), one way; the test split carries the true translation. CUT's networks
(antialiased, xavier init) made small: resnet_6blocks at ngf 16 on 32 px crops, batch
4, 64 patches per layer (a 32 px crop's deepest maps have 64 positions), a constant rate
for half the steps, then linear decay.
"""

import ml_collections

from configs import cut


def get_config() -> ml_collections.ConfigDict:
  """Returns the CUT demo config."""
  config = cut.get_config()
  config.dataset = 'synthetic:shapes'
  config.load_size = 36
  config.crop_size = 32
  config.batch_size = 4
  config.num_train_steps = 1500
  config.num_epochs = 1  # With num_train_steps: constant for half the run, then decay.
  config.num_epochs_decay = 1
  config.lr_schedule_granularity = 'step'
  config.model.netG = 'resnet_6blocks'
  config.model.ngf = 16
  config.model.ndf = 16
  config.optim.lr = 5e-4
  config.cut.num_patches = 64
  config.log_every_steps = 100
  config.sample_every_steps = 500
  config.checkpoint_every_steps = 500
  return config
