"""Losses against their textbook definitions."""

import jax.numpy as jnp
import numpy as np
import pytest

from cyclegan_jax import losses


def test_lsgan_is_mse_to_targets():
  x = jnp.array([[0.5, -1.0], [2.0, 0.0]])
  np.testing.assert_allclose(
    losses.gan_loss(x, True, 'lsgan'), np.mean((np.asarray(x) - 1) ** 2)
  )
  np.testing.assert_allclose(
    losses.gan_loss(x, False, 'lsgan'), np.mean(np.asarray(x) ** 2)
  )


def test_vanilla_is_bce_with_logits():
  x = np.array([0.3, -2.0, 4.0], np.float32)
  sig = 1 / (1 + np.exp(-x))
  np.testing.assert_allclose(
    losses.gan_loss(jnp.asarray(x), True, 'vanilla'), np.mean(-np.log(sig)), rtol=1e-5
  )
  np.testing.assert_allclose(
    losses.gan_loss(jnp.asarray(x), False, 'vanilla'),
    np.mean(-np.log(1 - sig)),
    rtol=1e-5,
  )


def test_discriminator_loss_is_halved_sum():
  real, fake = jnp.array([0.9, 0.7]), jnp.array([0.2, 0.4])
  expected = 0.5 * (np.mean((np.asarray(real) - 1) ** 2) + np.mean(np.asarray(fake) ** 2))
  np.testing.assert_allclose(
    losses.discriminator_loss(real, fake, 'lsgan'), expected, rtol=1e-6
  )


def test_l1_and_bfloat16_inputs_reduce_in_float32():
  a = jnp.ones((2, 4, 4, 3), jnp.bfloat16)
  b = jnp.zeros((2, 4, 4, 3), jnp.bfloat16)
  out = losses.l1_loss(a, b)
  assert out.dtype == jnp.float32 and float(out) == 1.0


def test_unknown_gan_mode_is_a_clear_error():
  with pytest.raises(ValueError, match='gan_mode'):
    losses.gan_loss(jnp.zeros(3), True, 'wgan')
