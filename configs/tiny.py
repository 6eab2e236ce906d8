"""The tiny config every test shares: trains in seconds on a CPU.

  python -m cyclegan_jax.main --config=configs/tiny.py --workdir=/tmp/cyclegan_tiny

`synthetic:colors` at 16 px crops, a resnet_6blocks generator at ngf 4, a 2-layer critic
(16 px is too small for the 3-layer PatchGAN), batch 4, 2 steps. Tests change fields of
it rather than writing their own; `shrink` applies its sizes to another config (the
ablation's base, for example).
"""

import ml_collections

from configs import default


def shrink(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Sets `config`'s sizes, schedule and logging to the tiny ones, in place."""
  config.load_size = 20  # Resize target before the random crop.
  config.crop_size = 16  # Training crop.
  config.batch_size = 4  # Divides by the 4 virtual devices of the tests.
  config.pool_size = 2  # A pool that fills and swaps within two steps.
  config.num_train_steps = 2
  config.checkpoint_every_steps = 2
  config.sample_every_steps = 2
  config.log_every_steps = 1
  config.num_sample_images = 2
  config.model.ngf = 4
  config.model.ndf = 4
  config.model.netD = 'n_layers'
  config.model.n_layers_D = 2
  config.eval.max_images = 6
  config.model.conv_impl = 'xla'  # The plain layers: the fastest to compile.
  return config


def get_config() -> ml_collections.ConfigDict:
  """Returns the tiny test config."""
  config = default.get_config()
  config.dataset = 'synthetic:colors'
  config.model.netG = 'resnet_6blocks'
  return shrink(config)
