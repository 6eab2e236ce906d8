"""The no-download demo: built-in synthetic domains at CPU size.

  python -m cyclegan_jax.main --config=configs/demo.py --workdir=/tmp/cyclegan_demo
  python -m cyclegan_jax.main --config=configs/demo.py --workdir=/tmp/cyclegan_demo --mode=eval

`synthetic:shapes` turns warm-coloured solid discs on a light background (A) into striped
squares in another palette on a dark background (B), and back; the test split carries
the true translation of every image. A small resnet_6blocks generator (ngf 16) at 32 px,
batch 4, 1500 steps (constant learning rate for 750, then linear decay).

Expected on 2 CPU cores: 4-6 minutes of training; at step 1500 PSNR ~14-16 dB and SSIM
~0.4-0.65 per direction against the ground truth, where the untranslated input scores
~3.2 dB and ~0.02.
"""

from configs import default


def get_config():
  """Returns the demo config."""
  config = default.get_config()
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
  config.log_every_steps = 100
  config.sample_every_steps = 500
  config.checkpoint_every_steps = 500
  return config
