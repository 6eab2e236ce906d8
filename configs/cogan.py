"""CoGAN (Liu and Tuzel 2016) with the public code's settings, as the CycleGAN paper's
baseline.

  python -m cyclegan_jax.main --config=configs/cogan.py --workdir=/tmp/cogan \
      --config.dataset=cycle_gan/horse2zebra

The public Caffe CelebA GAN's sizes and solver: 128 px crops of 132 px images
(mirrored), z of 100 from U[-1, 1], the coupled DCGAN-style generators and critics of
docs/cogan.md (ngf 32, ndf 32; the image layer and the critics' first conv untied),
the vanilla GAN loss, batch 128, Adam 2e-4 (beta1 0.5, beta2 0.999) at a fixed rate
with L2 weight decay 1e-4, 100000 iterations. Translation inverts z per image
(docs/cogan.md); --config.crop_size=64 --config.load_size=70 for 64 px.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  """Returns the CoGAN settings of the public implementation."""
  config = default.get_config()
  config.method = 'cogan'
  config.load_size = 132
  config.crop_size = 128
  config.batch_size = 128
  config.pool_size = 0  # No image pool: fresh noise every step.
  config.num_train_steps = 100_000
  config.num_epochs = 1  # With num_train_steps and no decay epochs: a fixed rate.
  config.num_epochs_decay = 0
  config.loss.gan_mode = 'vanilla'  # The two-way softmax of the public code.
  config.loss.lambda_identity = 0.0  # CycleGAN's terms mean nothing here.
  config.loss.lambda_A = 0.0
  config.loss.lambda_B = 0.0
  config.log_every_steps = 100
  config.sample_every_steps = 5000
  config.checkpoint_every_steps = 5000
  return config
