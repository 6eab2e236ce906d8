"""Losses against their textbook definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cyclegan_jax.methods import losses


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


# --------------------------------------------------------------------------------------
# Sliced Wasserstein colour distribution
# --------------------------------------------------------------------------------------


def _images(seed, shape=(2, 12, 12, 3)):
  return jax.random.uniform(jax.random.key(seed), shape, minval=-1, maxval=1)


def test_sliced_transport_is_zero_for_a_reordering_and_sees_a_shift():
  x = _images(0).reshape(-1, 3)
  dirs = losses.random_directions(jax.random.key(1), 16, 3)
  np.testing.assert_allclose(jnp.linalg.norm(dirs, axis=1), 1.0, rtol=1e-6)
  shuffled = jax.random.permutation(jax.random.key(2), x)
  assert float(losses.sliced_transport(x, x, shuffled, dirs)) == pytest.approx(
    0, abs=1e-6
  )
  # A constant shift s moves every projection by <s, d>: the loss is mean |<s, d>|.
  shift = jnp.array([0.3, -0.1, 0.2])
  got = losses.sliced_transport(x + shift, x + shift, x, dirs)
  np.testing.assert_allclose(got, jnp.mean(jnp.abs(dirs @ shift)), rtol=1e-5)


def test_sliced_transport_of_a_set_to_another_is_sliced_wasserstein_and_its_gradient():
  x, y = _images(10).reshape(-1, 3), _images(11).reshape(-1, 3)
  dirs = losses.random_directions(jax.random.key(12), 8, 3)
  # SW1 by its definition: sorted projections paired in order.
  sw = lambda x: jnp.mean(jnp.abs(jnp.sort(x @ dirs.T, 0) - jnp.sort(y @ dirs.T, 0)))
  transport = lambda x: losses.sliced_transport(x, x, y, dirs)
  np.testing.assert_allclose(transport(x), sw(x), rtol=1e-5)
  np.testing.assert_allclose(jax.grad(transport)(x), jax.grad(sw)(x), atol=1e-7)


def test_a_reference_set_gives_the_map_of_the_domains_not_of_one_image():
  """An image that is the darker half of its domain keeps its place: under the map from
  its whole domain to a brighter one it moves by the domain shift, not onto the other
  domain's histogram."""
  domain = jnp.linspace(-1.0, 0.0, 200)[:, None]
  dark = domain[:100]
  target = domain + 0.5
  dirs = jnp.ones((1, 1))
  np.testing.assert_allclose(
    losses.sliced_transport(dark, domain, target, dirs), 0.5, rtol=1e-5
  )
  # Against the other domain alone, the dark half would be pulled much further.
  assert float(losses.sliced_transport(dark, dark, target[::2], dirs)) > 0.7


def test_colour_loss_ignores_where_pixels_are_and_refuses_other_shapes():
  x = _images(3)
  key = jax.random.key(4)
  kwargs = dict(num_projections=8)
  flipped = x[:, ::-1, ::-1]  # The same pixels elsewhere: the same colour histogram.
  assert float(losses.colour_distribution_loss(flipped, x, key, **kwargs)) < 1e-6
  assert float(losses.colour_distribution_loss(0.5 * _images(5), x, key, **kwargs)) > 0.01
  with pytest.raises(ValueError, match='differ in shape'):
    losses.colour_distribution_loss(x[:, :8], x, key, **kwargs)


def test_colour_loss_with_histories_maps_all_fakes_to_all_reals():
  shift = jnp.array([0.6, -0.4, 0.5])  # Well above the two samples' differences.
  fake, real = _images(13, (1, 8, 8, 3)), _images(14, (1, 8, 8, 3)) + shift
  fake_history = _images(15, (3, 8, 8, 3))
  real_history = _images(16, (3, 8, 8, 3)) + shift
  key = jax.random.key(17)
  loss = lambda **kw: losses.colour_distribution_loss(
    fake,
    real,
    key,
    num_projections=8,
    fake_history=fake_history,
    real_history=real_history,
    **kw,
  )
  rows = lambda *ims: jnp.concatenate(ims).reshape(-1, 3)
  dirs = losses.random_directions(
    jax.random.split(jax.random.split(key, 1)[0], 3)[0], 8, 3
  )
  want = losses.sliced_transport(
    rows(fake), rows(fake, fake_history), rows(real, real_history), dirs
  )
  np.testing.assert_allclose(loss(), want, rtol=1e-5)
  # More rows than max_samples: the references are subsampled, the value stays close.
  assert float(want) > 0.1
  np.testing.assert_allclose(loss(max_samples=128), want, rtol=0.1)


def test_colour_loss_gradient_moves_a_colour_cast_towards_the_target():
  """Gradient descent on the loss alone recovers a global colour offset (unpaired)."""
  target = _images(9, (1, 16, 16, 3))
  source = jnp.flip(target, axis=1) + jnp.array([0.4, -0.3, 0.2])
  offset = jnp.zeros(3)
  loss = lambda o, k: losses.colour_distribution_loss(
    source + o, target, k, num_projections=32
  )
  grad = jax.jit(jax.grad(loss))
  steps = 300
  for i in range(steps):  # W1: sign-like gradients, so the rate decays.
    offset = offset - 0.5 * (1 - i / steps) * grad(offset, jax.random.key(i))
  np.testing.assert_allclose(offset, [-0.4, 0.3, -0.2], atol=0.03)
