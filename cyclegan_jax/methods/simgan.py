"""SimGAN (Shrivastava et al. 2017) as the CycleGAN paper's baseline "pixel loss + GAN".

One generator G: A → B trained with the adversarial loss plus λ‖x − G(x)‖₁ on pixels
(`baseline.lambda_content`); the rest is `regularized_gan`.
"""

from cyclegan_jax.methods import regularized_gan

NAME = 'simgan'
METHOD = regularized_gan.make_method(NAME, content='pixel', content_term='G_pixel')
