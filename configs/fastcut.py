"""FastCUT (Park et al. 2020): CUT without the identity NCE term, λ_NCE 10, flip-
equivariance, 150 + 50 epochs (the official `--CUT_mode FastCUT` defaults).

  python -m cyclegan_jax.main --config=configs/fastcut.py --workdir=/tmp/fastcut_h2z \
      --config.dataset=cycle_gan/horse2zebra
"""

import ml_collections

from configs import cut


def get_config() -> ml_collections.ConfigDict:
  """Returns the FastCUT defaults."""
  config = cut.get_config()
  config.cut.nce_idt = False
  config.cut.lambda_NCE = 10.0
  config.cut.flip_equivariance = True
  config.num_epochs = 150
  config.num_epochs_decay = 50
  return config
