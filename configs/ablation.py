"""The paper's loss ablation (Zhu et al. 2017, Tables 4 and 5) in miniature, on CPU.

All five rows, trained and evaluated one after another, tabulated in
DIR/ablation.md and DIR/ablation.json (about 15 minutes on 2 CPU cores):

  python -m cyclegan_jax.studies.ablation --workdir=/tmp/cyclegan_ablation

One row with the usual entry point (`:VARIANT` picks the row; default `cyclegan`):

  python -m cyclegan_jax.main --config=configs/ablation.py:gan_alone \
      --workdir=/tmp/cyclegan_ablation/gan_alone

Rows (each is a loss switch of configs/default.py, not a code change):

  cycle_alone   loss.lambda_gan = 0: the two cycle losses only.
  gan_alone     loss.lambda_A = loss.lambda_B = 0: the two adversarial losses only.
  gan_forward   GAN + forward cycle A→B→A (loss.lambda_B = 0).
  gan_backward  GAN + backward cycle B→A→B (loss.lambda_A = 0).
  cyclegan      the full objective.

Identity is off (loss.lambda_identity = 0) in every row: the paper's ablation runs on
Cityscapes labels↔photos, where it uses no identity loss. The rest is the demo setting
(configs/demo.py: `synthetic:shapes`, 32 px crops, resnet_6blocks ngf 16; batch 4) at a
shorter schedule, so that five runs fit the CPU budget. `synthetic:shapes` has ground
truth for its test images, so each row gets PSNR/SSIM per direction against it.

Expected (docs/ablation.md has a measured table; ~15 min for all five rows on 2 CPU
cores): CycleGAN best in both directions (PSNR ~15 dB, SSIM ~0.55-0.6); each
one-direction cycle row breaks down in the direction whose cycle is missing.
"""

from __future__ import annotations

import ml_collections

from configs import demo
from cyclegan_jax.studies import ablation

VARIANTS = tuple(ablation.VARIANTS)  # The rows, in the paper's order.
DEFAULT_VARIANT = 'cyclegan'


def get_base_config() -> ml_collections.ConfigDict:
  """The full objective in the ablation setting (every row starts from this)."""
  config = demo.get_config()
  config.loss.lambda_identity = 0.0  # As in the paper's ablation (Cityscapes).
  # Pinned here (as are the steps) so the README table stays reproducible.
  config.batch_size = 4
  # 2 CPU cores: 2.5-4 minutes per row with compilation and evaluation.
  config.num_train_steps = 1000
  config.log_every_steps = 100
  config.sample_every_steps = 500
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 1
  return config


def get_config(variant: str | None = None) -> ml_collections.ConfigDict:
  """Returns the locked config of one ablation row (`configs/ablation.py:VARIANT`).

  Args:
    variant: one of VARIANTS; None or '' gives the full CycleGAN row.

  Raises:
    ValueError: `variant` is not a row; the message lists the valid ones.
  """
  return ablation.apply_variant(get_base_config(), variant or DEFAULT_VARIANT)
