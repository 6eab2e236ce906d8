"""CUT (Park et al. 2020) with the official code's train defaults.

  python -m cyclegan_jax.main --config=configs/cut.py --workdir=/tmp/cut_h2z \
      --config.dataset=cycle_gan/horse2zebra

The official `--model cut --CUT_mode CUT` defaults: a resnet_9blocks generator with
antialiased down- and upsampling (the blur layouts) and the 70×70 PatchGAN with
antialiased downsampling, xavier init (gain 0.02) of G, D and the MLP heads F, the LSGAN
loss, PatchNCE at layers 0,4,8,12,16 with 256 patches, τ 0.07, λ_NCE 1 and the identity
NCE term, no image pool, Adam 2e-4 (0.5, 0.999) for G, D and F, batch 1, load 286 and
crop 256, 200 + 200 epochs. configs/fastcut.py is FastCUT.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  """Returns the CUT defaults (the official `train.py --model cut`)."""
  config = default.get_config()
  config.method = 'cut'
  config.pool_size = 0  # The official CUT sets --pool_size 0.
  config.num_epochs = 200
  config.num_epochs_decay = 200
  config.model.upsample = 'blur'  # The official no_antialias_up=False.
  config.model.downsample = 'blur'  # no_antialias=False, in G ...
  config.model.downsample_D = 'blur'  # ... and in D.
  config.loss.gan_mode = 'lsgan'
  config.loss.lambda_gan = 1.0
  config.loss.lambda_identity = 0.0  # CycleGAN's; CUT's identity term is nce_idt.
  config.cut.lambda_NCE = 1.0
  config.cut.nce_idt = True
  config.cut.flip_equivariance = False
  return config
