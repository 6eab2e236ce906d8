"""The patch-distribution (sliced Wasserstein) loss in the train step: its terms, its
image histories, several devices, and its config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cyclegan_jax.methods import cycle_gan
from cyclegan_jax.methods import image_pool
from cyclegan_jax.methods import losses
from cyclegan_jax.train import step as step_lib
from tests.test_critic_switches import refused
from tests.test_train import IMAGE
from tests.test_train import batches
from tests.test_train import mesh_of
from tests.test_train import tiny_config
from tests.test_train import tiny_networks

SWD = {'loss.lambda_swd': 2.0, 'loss.swd_projections': 16}


def expected_swd(networks, real, fake, key, banks=None, name='B'):
  """λ · the patch loss of `fake` against `real`, along the map from the history of
  fakes to that of reals when there are `banks`."""
  cfg = networks.loss
  histories = {}
  if banks:
    histories = {
      'fake_history': image_pool.filled(banks[f'fake_{name}'], fake),
      'real_history': image_pool.filled(banks[f'real_{name}'], real),
    }
  return cfg.lambda_swd * losses.colour_distribution_loss(
    fake,
    real,
    key,
    num_projections=cfg.swd_projections,
    max_samples=cfg.swd_samples,
    **histories,
  )


def test_terms_compare_each_fake_and_its_history_with_the_reals_of_its_domain():
  config = tiny_config(**SWD, **{'loss.swd_bank': 3})
  networks = tiny_networks(config)
  params = cycle_gan.init_params(networks, jax.random.key(0), IMAGE)
  g = {k: params[k] for k in cycle_gan.GENERATORS}
  d = {k: params[k] for k in cycle_gan.DISCRIMINATORS}
  data = batches(3, 2)
  a, b = (jnp.asarray(data[0][k]) for k in 'AB')
  # Histories with one stored image each: the other two slots show the current ones.
  banks = {
    f'{kind}_{dom}': image_pool.push(
      image_pool.init_pool(3, IMAGE), jnp.asarray(data[1][dom][:1])
    )
    for kind in ('real', 'fake')
    for dom in 'AB'
  }
  key = jax.random.key(5)
  total, (terms, fakes) = cycle_gan.generator_losses(
    g, d, a, b, networks=networks, swd_key=key, swd_banks=banks
  )
  key_a, key_b = jax.random.split(key)
  want_a = expected_swd(networks, b, fakes['fake_B'], key_a, banks, 'B')
  want_b = expected_swd(networks, a, fakes['fake_A'], key_b, banks, 'A')
  np.testing.assert_allclose(terms['loss_swd_A'], want_a, rtol=1e-5)
  np.testing.assert_allclose(terms['loss_swd_B'], want_b, rtol=1e-5)
  without, (plain_terms, _) = cycle_gan.generator_losses(
    g, d, a, b, networks=tiny_networks(tiny_config())
  )
  assert 'loss_swd_A' not in plain_terms
  np.testing.assert_allclose(total, without + want_a + want_b, rtol=1e-5)
  with pytest.raises(ValueError, match='swd_key'):
    cycle_gan.generator_losses(g, d, a, b, networks=networks)


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_four_devices_average_their_own_losses_and_keep_their_own_histories():
  config = tiny_config(**SWD, **{'loss.swd_bank': 3})
  networks = tiny_networks(config)
  mesh = mesh_of(4)
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=IMAGE, pool_size=0
  )
  assert sorted(state.banks) == ['fake_A', 'fake_B', 'real_A', 'real_B']
  rngs = np.asarray(state.rng)
  params = jax.device_get(state.params)
  step = step_lib.make_parallel_train_step(networks, mesh, state)
  data = batches(2, 4)
  metrics = []
  for batch in step_lib.device_batches(data, mesh):
    state, m = step(state, batch)
    metrics.append(jax.device_get(m))
  # Step 1, by hand: device i compares its own image (histories empty) with its key.
  g = {k: params[k] for k in cycle_gan.GENERATORS}
  per_device = []
  for i in range(4):
    key = jax.random.fold_in(jax.random.wrap_key_data(rngs[i]), cycle_gan._SWD_STREAM)
    key = jax.random.fold_in(jax.random.fold_in(key, 0), i)
    a = jnp.asarray(data[0]['A'][i : i + 1])
    fake_b = networks.generator.apply({'params': g['G_A']}, a)
    real_b = jnp.asarray(data[0]['B'][i : i + 1])
    empty = {k: image_pool.init_pool(3, IMAGE) for k in ('fake_B', 'real_B')}
    per_device.append(
      expected_swd(networks, real_b, fake_b, jax.random.split(key)[0], empty)
    )
  np.testing.assert_allclose(metrics[0]['loss_swd_A'], np.mean(per_device), rtol=1e-4)
  # Each device's history holds its own two real images, oldest first.
  history = np.asarray(state.banks['real_A'].images).reshape(4, 3, *IMAGE)
  for i in range(4):
    np.testing.assert_array_equal(history[i, :2], [data[0]['A'][i], data[1]['A'][i]])
  np.testing.assert_array_equal(np.asarray(state.banks['real_A'].count), [2] * 4)


def test_off_by_default_with_no_histories_in_the_state():
  networks = tiny_networks(tiny_config(**{'loss.swd_bank': 8}))  # λ 0: no bank.
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh_of(1), image_shape=IMAGE, pool_size=0
  )
  assert state.banks == {}


@pytest.mark.parametrize(
  'field,value',
  [
    ('loss.lambda_swd', -1.0),
    ('loss.swd_projections', 0),
    ('loss.swd_bank', -1),
    ('loss.swd_samples', 1),
  ],
)
def test_bad_values_are_refused(field, value):
  refused(field, value)
