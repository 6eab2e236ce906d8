"""The baselines at CPU size on built-in synthetic data (no download but VGG's weights).

  python -m cyclegan_jax.main --config=configs/demo_baselines.py:simgan \
      --workdir=/tmp/simgan_demo
  python -m cyclegan_jax.main --config=configs/demo_baselines.py:bigan \
      --workdir=/tmp/bigan_demo
  python -m cyclegan_jax.main --config=configs/demo_baselines.py:feature_gan \
      --workdir=/tmp/feature_demo --config.baseline.vgg_weights=vgg16-397923af.pth
  python -m cyclegan_jax.main --config=configs/demo_baselines.py:bigan \
      --workdir=/tmp/bigan_demo --mode=eval

The CycleGAN demo's task and sizes (configs/demo.py: `synthetic:shapes`, resnet_6blocks
at ngf 16, 32 px, batch 4, 1500 steps) with the method after the colon (default
simgan); its test split carries the true translation, so evaluation scores each
baseline against the ground truth as it scores CycleGAN.
"""

import ml_collections

from configs import demo


def get_config(method: str = 'simgan') -> ml_collections.ConfigDict:
  """The demo config with `method` ('simgan' | 'feature_gan' | 'bigan')."""
  config = demo.get_config()
  config.method = method or 'simgan'
  config.loss.lambda_identity = 0.0  # The baselines have no identity term.
  return config
