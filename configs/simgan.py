"""The CycleGAN paper's "SimGAN" baseline (pixel loss + GAN), with CycleGAN's settings.

  python -m cyclegan_jax.main --config=configs/simgan.py --workdir=/tmp/simgan_maps

One generator A → B: the adversarial loss plus λ‖x − G(x)‖₁ (baseline.lambda_content,
10 here: the paper does not give its value; see docs/baselines.md). Everything else is
CycleGAN's: resnet_9blocks, the 70×70 PatchGAN, LSGAN, Adam 2e-4 (β₁ 0.5), batch 1,
pool 50, 256 px crops, 100 + 100 epochs with linear decay. On cycle_gan/maps (photo →
map), one of the paper's two baseline comparisons; cityscapes is the other
(`--config.dataset=cycle_gan/cityscapes`).
"""

import ml_collections

from configs import default


def get_config(method: str = 'simgan') -> ml_collections.ConfigDict:
  """The paper's CycleGAN settings with `method` ('simgan' | 'feature_gan' | 'bigan')."""
  config = default.for_dataset('cycle_gan/maps', lambda_identity=0.0)
  config.method = method
  return config
