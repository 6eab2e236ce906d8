"""The critic-side switches of configs/default.py: TTUR, batch-scaled rates, R1."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from configs import tiny
from cyclegan_jax import config_checks
from cyclegan_jax import losses
from cyclegan_jax import models
from cyclegan_jax import step as step_lib

IMAGE = (16, 16, 3)


def tiny_config(**overrides):
  """The tiny config, no pool, with `overrides` ('optim.lr_D_scale': 2.0, ...)."""
  config = tiny.get_config()
  config.pool_size = 0
  for key, value in overrides.items():
    *path, leaf = key.split('.')
    target = config
    for part in path:
      target = target[part]
    target[leaf] = value
  return config


def tiny_networks(config):
  """The config's networks with a one-block generator (compiles in seconds)."""
  networks = step_lib.create_networks(config, epoch_length=10)
  return dataclasses.replace(
    networks, generator=models.ResnetGenerator(ngf=4, num_blocks=1)
  )


def mesh_of(n):
  return jax.make_mesh((n,), ('data',), devices=jax.devices()[:n])


def batches(n_steps, batch_size, seed=0):
  rng = np.random.default_rng(seed)
  return [
    {k: rng.uniform(-1, 1, (batch_size, *IMAGE)).astype(np.float32) for k in 'AB'}
    for _ in range(n_steps)
  ]


def train(config, n_devices=1, n_steps=2):
  """`n_steps` steps of `config`; returns the initial state's params and the final state,
  every step's metrics."""
  networks = tiny_networks(config)
  mesh = mesh_of(n_devices)
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=IMAGE, pool_size=config.pool_size
  )
  initial = jax.device_get(state.params)
  step = step_lib.make_parallel_train_step(networks, mesh, state)
  metrics = []
  for batch in step_lib.device_batches(batches(n_steps, config.batch_size), mesh):
    state, m = step(state, batch)
    metrics.append(jax.device_get(m))
  return initial, state, metrics


def refused(field, value):
  """The one-line message validate() gives for `field=value` on the default config."""
  tree = default.get_config().to_dict()
  *parents, leaf = field.split('.')
  node = tree
  for part in parents:
    node = node[part]
  node[leaf] = value
  import ml_collections  # pylint: disable=g-import-not-at-top

  with pytest.raises(ValueError) as raised:
    config_checks.validate(ml_collections.ConfigDict(tree))
  message = str(raised.value)
  assert message.startswith(f'config.{field}=') and '\n' not in message, message
  return message


# --------------------------------------------------------------------------------------
# Learning rates
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  'field,value',
  [
    ('optim.lr_D_scale', 0.0),
    ('optim.lr_D_scale', -1.0),
    ('optim.lr_batch_scaling', 'log'),
    ('loss.r1_gamma', -1.0),
  ],
)
def test_bad_switch_values_are_refused(field, value):
  refused(field, value)


def test_critics_update_scales_with_lr_d_scale():
  """Adam's update is proportional to its rate: the critics' scales, the generators'
  does not."""
  grads = {'w': jnp.array([0.3, -2.0, 1e-3])}
  updates = {}
  for scale in (1.0, 0.25):
    networks = step_lib.create_networks(tiny_config(**{'optim.lr_D_scale': scale}), 10)
    for name, tx in (('G', networks.tx_g), ('D', networks.tx_d)):
      updates[name, scale] = tx.update(grads, tx.init(grads), grads)[0]['w']
  np.testing.assert_allclose(updates['D', 0.25], 0.25 * updates['D', 1.0], rtol=1e-6)
  np.testing.assert_array_equal(updates['G', 0.25], updates['G', 1.0])
  assert np.all(np.abs(updates['D', 1.0]) > 0)


@pytest.mark.parametrize(
  'scaling,factor', [('none', 1.0), ('linear', 8.0), ('sqrt', math.sqrt(8.0))]
)
def test_batch_scaling_multiplies_both_rates(scaling, factor):
  config = tiny_config(
    **{'optim.lr_batch_scaling': scaling, 'batch_size': 8, 'optim.lr_D_scale': 0.5}
  )
  schedule = step_lib.create_learning_rate_schedule(config, epoch_length=10)
  assert float(schedule(0)) == pytest.approx(2e-4 * factor, rel=1e-6)
  networks = step_lib.create_networks(config, 10)
  grads = {'w': jnp.array([1.0])}
  update = networks.tx_d.update(grads, networks.tx_d.init(grads), grads)[0]['w']
  np.testing.assert_allclose(update, [-2e-4 * factor * 0.5], rtol=1e-5)


def test_two_steps_with_ttur_log_the_critics_rate():
  _, _, metrics = train(tiny_config(**{'optim.lr_D_scale': 2.0}))
  assert metrics[0]['learning_rate_D'] == pytest.approx(2 * metrics[0]['learning_rate'])
  assert all(np.isfinite(v) for m in metrics for v in m.values())


# --------------------------------------------------------------------------------------
# R1
# --------------------------------------------------------------------------------------


def test_r1_penalty_equals_a_hand_computation():
  """D(x) = Σ w·x² per image: ∇_x = 2·w·x, so the penalty is E_b Σ (2·w·x)²."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(3, 4, 4, 2)).astype(np.float32)
  w = rng.normal(size=(4, 4, 2)).astype(np.float32)
  critic = lambda images: jnp.sum(w * images**2, axis=(1, 2, 3))[:, None, None, None]
  logits, penalty = losses.r1_penalty(critic, jnp.asarray(x))
  np.testing.assert_allclose(logits, critic(x), rtol=1e-6)
  want = np.mean(np.sum((2 * w * x) ** 2, axis=(1, 2, 3)))
  np.testing.assert_allclose(penalty, want, rtol=1e-5)


def test_r1_term_is_logged_and_added_to_the_critics_loss():
  config = tiny_config(**{'loss.r1_gamma': 10.0})
  networks = tiny_networks(config)
  params = step_lib.init_params(networks, jax.random.key(0), IMAGE)
  d_params = {k: params[k] for k in step_lib.DISCRIMINATORS}
  (a, b), (fa, fb) = ((jnp.asarray(x[k]) for k in 'AB') for x in batches(2, 2))
  total, terms = step_lib.discriminator_losses(d_params, a, b, fa, fb, networks=networks)
  critic = lambda x: networks.discriminator.apply({'params': d_params['D_A']}, x)
  _, penalty_a = losses.r1_penalty(critic, b)
  np.testing.assert_allclose(terms['loss_R1_A'], 5.0 * penalty_a, rtol=1e-5)
  assert terms['loss_R1_A'] > 0 and terms['loss_R1_B'] > 0
  np.testing.assert_allclose(
    total,
    terms['loss_D_A'] + terms['loss_D_B'] + terms['loss_R1_A'] + terms['loss_R1_B'],
    rtol=1e-6,
  )


def test_two_steps_with_r1():
  _, _, metrics = train(tiny_config(**{'loss.r1_gamma': 1.0}))
  assert all(np.isfinite(v) for m in metrics for v in m.values())
  assert metrics[1]['loss_R1_A'] > 0
