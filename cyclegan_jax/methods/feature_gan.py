"""The CycleGAN paper's "feature loss + GAN" baseline: SimGAN on VGG-16 features.

One generator G: A → B trained with the adversarial loss plus λ‖φ(x) − φ(G(x))‖₁, φ
VGG-16's relu4_2 (torchvision's weights, `baseline.vgg_weights`); the rest is
`regularized_gan`.
"""

from cyclegan_jax.methods import regularized_gan

NAME = 'feature_gan'
METHOD = regularized_gan.make_method(NAME, content='vgg', content_term='G_feature')
