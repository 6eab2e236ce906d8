"""CycleGAN's losses, as the official code computes them (models/cycle_gan_model.py).

All reductions are means over every element, like `nn.MSELoss`, `nn.L1Loss` and
`nn.BCEWithLogitsLoss`, and are computed in float32 whatever the compute dtype.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

GAN_MODES = ('lsgan', 'vanilla')


def gan_loss(logits: jax.Array, target_is_real: bool, gan_mode: str) -> jax.Array:
  """The reference's `GANLoss`: MSE to 1/0 (lsgan) or BCE with logits (vanilla)."""
  logits = logits.astype(jnp.float32)
  target = jnp.full_like(logits, 1.0 if target_is_real else 0.0)
  if gan_mode == 'lsgan':
    return jnp.mean(jnp.square(logits - target))
  if gan_mode == 'vanilla':
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, target))
  raise ValueError(f'loss.gan_mode must be one of {GAN_MODES}, got {gan_mode!r}.')


def l1_loss(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean absolute error (the cycle and identity losses)."""
  return jnp.mean(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))


def discriminator_loss(
  real_logits: jax.Array, fake_logits: jax.Array, gan_mode: str
) -> jax.Array:
  """0.5 · (loss(D(real), 1) + loss(D(fake), 0)): the reference halves D's loss."""
  return 0.5 * (
    gan_loss(real_logits, True, gan_mode) + gan_loss(fake_logits, False, gan_mode)
  )


def discriminator_score(logits: jax.Array, gan_mode: str) -> jax.Array:
  """The critic's mean output for logging: raw for lsgan, a probability for vanilla."""
  logits = logits.astype(jnp.float32)
  return jnp.mean(jax.nn.sigmoid(logits) if gan_mode == 'vanilla' else logits)


def r1_penalty(
  critic: Callable[[jax.Array], jax.Array], real: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """The critic's logits on `real` and E‖∇_x Σ D(x)‖² over the batch (R1, unweighted).

  A PatchGAN scores patches: the gradient is that of the sum of its patch logits per
  image (one vjp, sharing the forward pass with the logits the loss uses).
  """
  logits, vjp = jax.vjp(critic, real)
  (grad,) = vjp(jnp.ones_like(logits))
  grad = grad.astype(jnp.float32)
  return logits, jnp.mean(jnp.sum(jnp.square(grad), axis=tuple(range(1, grad.ndim))))


def image_patches(images: jax.Array, patch_size: int) -> jax.Array:
  """[N, H, W, C] → [N·H'·W', C·k²]: every k×k patch (stride 1, no padding) as a row."""
  if patch_size == 1:
    return images.reshape(-1, images.shape[-1])
  patches = jax.lax.conv_general_dilated_patches(
    images,
    (patch_size, patch_size),
    (1, 1),
    'VALID',
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )
  return patches.reshape(-1, patches.shape[-1])


def sliced_wasserstein(x: jax.Array, y: jax.Array, directions: jax.Array) -> jax.Array:
  """Sliced Wasserstein-1 distance between the rows of `x` and of `y` (equal counts).

  Both sets are projected on each unit row of `directions` [P, D]; in one dimension the
  optimal matching pairs the sorted values, so the distance is their mean |difference|.
  """
  px = jnp.sort(x.astype(jnp.float32) @ directions.T, axis=0)
  py = jnp.sort(y.astype(jnp.float32) @ directions.T, axis=0)
  return jnp.mean(jnp.abs(px - py))


def random_directions(key: jax.Array, num: int, dim: int) -> jax.Array:
  """`num` directions drawn uniformly on the unit sphere of R^dim, as rows."""
  d = jax.random.normal(key, (num, dim), jnp.float32)
  return d / jnp.linalg.norm(d, axis=1, keepdims=True)


def patch_distribution_loss(
  fake: jax.Array,
  real: jax.Array,
  key: jax.Array,
  *,
  patch_size: int,
  levels: int,
  num_projections: int,
) -> jax.Array:
  """How far the k×k patches of `fake` are, as a set, from those of `real` (unpaired).

  The sliced Wasserstein distance between the two images' patch sets, averaged over
  `levels` pyramid levels (each a 2×2 average of the one before): 1×1 patches compare
  colour histograms, larger ones local texture (Heitz et al. 2021; Pitié et al. 2005's
  colour transfer by random 1-D projections). The images must have the same shape.
  """
  if fake.shape != real.shape:
    raise ValueError(f'fake {fake.shape} and real {real.shape} differ in shape.')
  total = jnp.zeros((), jnp.float32)
  for level, k in enumerate(jax.random.split(key, levels)):
    if level:
      fake, real = _half(fake), _half(real)
    dirs = random_directions(k, num_projections, fake.shape[-1] * patch_size**2)
    total += sliced_wasserstein(
      image_patches(fake, patch_size), image_patches(real, patch_size), dirs
    )
  return total / levels


def _half(images: jax.Array) -> jax.Array:
  """A 2×2 average pool (odd sizes drop their last row/column)."""
  n, h, w, c = images.shape
  images = images[:, : h // 2 * 2, : w // 2 * 2]
  return images.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
