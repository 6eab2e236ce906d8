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
