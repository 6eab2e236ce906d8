"""The CycleGAN paper's "feature loss + GAN" baseline, with CycleGAN's settings.

  python -m cyclegan_jax.main --config=configs/feature_gan.py --workdir=/tmp/feat_maps \
      --config.baseline.vgg_weights=/path/to/vgg16-397923af.pth

SimGAN (configs/simgan.py) with the L1 distance between VGG-16 relu4_2 features of x and
G(x) instead of pixels. The weights are torchvision's vgg16-397923af.pth
(https://download.pytorch.org/models/vgg16-397923af.pth), passed as above or through
$CYCLEGAN_JAX_VGG_WEIGHTS.
"""

import ml_collections

from configs import simgan


def get_config() -> ml_collections.ConfigDict:
  """The paper's CycleGAN settings with method 'feature_gan'."""
  return simgan.get_config('feature_gan')
