"""The 1-channel demo: colourising a grayscale domain, and back, at CPU size.

  python -m cyclegan_jax.main --config=configs/demo_gray.py --workdir=/tmp/cyclegan_gray
  python -m cyclegan_jax.main --config=configs/demo_gray.py --workdir=/tmp/cyclegan_gray \
      --mode=eval

`synthetic:gray2color`: A is a 1-channel scene of discs (the luma of B), B the same scene
in colour, so G_A colourises (1 → 3 channels) and G_B turns colour to gray (3 → 1); the
test split carries the true translation of every image. `model.input_nc = 1` and no
identity loss (it needs equal channels). For 3 → 1 the other way round, use
`--config.dataset=synthetic:color2gray --config.model.input_nc=3
--config.model.output_nc=1`. The demo's networks and sizes (configs/demo.py), 300 steps.
"""

from configs import demo


def get_config():
  """Returns the grayscale demo config."""
  config = demo.get_config()
  config.dataset = 'synthetic:gray2color'
  config.model.input_nc = 1  # Domain A is grayscale; B (output_nc) stays RGB.
  config.loss.lambda_identity = 0.0  # The identity loss needs input_nc == output_nc.
  config.num_train_steps = 300
  config.log_every_steps = 50
  config.sample_every_steps = 100
  config.checkpoint_every_steps = 100
  return config
