"""The 1-channel demo: colourising a grayscale domain, and back, at CPU size.

  python -m cyclegan_jax.main --config=configs/demo_gray.py --workdir=/tmp/cyclegan_gray
  python -m cyclegan_jax.main --config=configs/demo_gray.py --workdir=/tmp/cyclegan_gray \
      --mode=eval

`synthetic:gray2color`: A is a 1-channel scene of discs (the luma of B), B the same scene
in colour, so G_A colourises (1 → 3 channels) and G_B turns colour to gray (3 → 1); the
test split carries the true translation of every image. `model.input_nc = 1` and no
identity loss (it needs equal channels). For 3 → 1 the other way round, use
`--config.dataset=synthetic:color2gray --config.model.input_nc=3
--config.model.output_nc=1`. Otherwise configs/demo.py: 32 px, resnet_6blocks at ngf 16,
1500 steps.

Measured on 2 busy CPU cores (about 10 minutes with compilation): at step 1500, A→B
(colourising) PSNR 16.7 dB and SSIM 0.69 against the ground truth, still under the
17.9 dB and 0.82 of the gray input shown as RGB (the background and shapes are right,
but most discs come out one colour); B→A 21.9 dB and 0.79, where the exact answer, the
luma, scores 100 dB. At step 300: 15.9 dB / 0.55 and 21.1 dB / 0.68.
"""

from configs import demo


def get_config():
  """Returns the grayscale demo config."""
  config = demo.get_config()
  config.dataset = 'synthetic:gray2color'
  config.model.input_nc = 1  # Domain A is grayscale; B (output_nc) stays RGB.
  config.loss.lambda_identity = 0.0  # The identity loss needs input_nc == output_nc.
  return config
