"""The paper's method comparison (Zhu et al. 2017, Tables 1-3) in miniature, on CPU.

Every row of the comparison, over seeds, trained, evaluated and scored on the built-in
labels↔photo benchmark, tabulated in DIR/compare.md and DIR/compare.json:

  python -m cyclegan_jax.studies.compare --workdir=/tmp/cyclegan_compare \
      [--methods=cycle_gan,pix2pix] [--seeds=0,1,2]

This file is the *base* every row starts from; each row then sets its own method's
fields (`cyclegan_jax.studies.compare.ROWS`): pix2pix reads aligned pairs, the baselines
switch `method`, the ablation rows switch loss terms off. One row with the usual entry
point, e.g. CycleGAN:

  python -m cyclegan_jax.main --config=configs/compare.py \
      --workdir=/tmp/cyclegan_compare/cycle_gan/seed_0

`synthetic:streets` (A the photo, B the Cityscapes colour label map; AtoB is
photo→labels, Table 3, and BtoA labels→photo, Table 2) drawn at 32 px, the CPU demo's
networks (resnet_6blocks at ngf 16, the 70×70 PatchGAN at ndf 16), batch 4, 1000 steps
(constant rate for half, then linear decay) and no identity term: the paper's Cityscapes
comparison uses none.
"""

import ml_collections

from configs import demo


def get_config() -> ml_collections.ConfigDict:
  """Returns the comparison's base config (CycleGAN's row before its own settings)."""
  config = demo.get_config()
  config.dataset = 'synthetic:streets'
  config.load_size = 32  # The scenes are drawn at this size; no crop jitter.
  config.crop_size = 32
  config.loss.lambda_identity = 0.0  # The paper's Cityscapes runs use no identity term.
  config.num_train_steps = 1000
  config.log_every_steps = 100
  config.sample_every_steps = 1000
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 1
  config.eval.max_images = -1  # All 64 test scenes per direction.
  return config
