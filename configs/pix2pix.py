"""pix2pix (Isola et al. 2017) with the official code's train defaults, on paired data.

  python -m cyclegan_jax.main --config=configs/pix2pix.py --workdir=/tmp/p2p \
      --config.dataset=folder:PATH

PATH (default ./datasets/facades, where the official download script puts it) holds
the official aligned layout (`train/`, `val/`, `test/` of A|B side-by-side images) or
`trainA/` and `trainB/` with equal file names. The official
`--model pix2pix` defaults: a unet_256 generator with batch norm and dropout, the 70×70
PatchGAN on (A, B) with batch norm, the vanilla GAN loss plus 100 × L1, no image pool,
Adam 2e-4 (beta1 0.5), batch 1, 100 + 100 epochs, load 286 and crop 256.
"""

import ml_collections

from configs import default


def get_config() -> ml_collections.ConfigDict:
  """Returns the pix2pix defaults (the official `train.py --model pix2pix`)."""
  config = default.get_config()
  config.method = 'pix2pix'
  config.dataset = 'folder:./datasets/facades'
  config.dataset_mode = 'aligned'
  config.direction = 'AtoB'
  config.pool_size = 0  # The official pix2pix sets --pool_size 0.
  config.model.netG = 'unet_256'
  config.model.norm = 'batch'
  config.model.norm_D = 'batch'  # The official critic takes --norm too.
  config.model.use_dropout = True  # The official --no_dropout turns it off.
  config.loss.gan_mode = 'vanilla'
  config.loss.lambda_L1 = 100.0
  config.loss.lambda_identity = 0.0
  return config


def for_dataset(
  dataset: str, *, direction: str, batch_size: int = 1, epochs: int = 200
) -> ml_collections.ConfigDict:
  """pix2pix on one paired dataset (the per-dataset files): its direction, batch and
  epochs, half at the initial rate and half decaying, as the official 100 + 100."""
  config = get_config()
  config.dataset = dataset
  config.direction = direction
  config.batch_size = batch_size
  config.num_epochs = (epochs + 1) // 2
  config.num_epochs_decay = epochs // 2
  return config
