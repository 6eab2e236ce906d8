"""The critic-side switches of configs/default.py: TTUR, batch-scaled rates, R1,
DiffAugment, spectral norm."""

import dataclasses
import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import pytest

from configs import default
from configs import tiny
from cyclegan_jax.cli import config_checks
from cyclegan_jax.methods import cycle_gan
from cyclegan_jax.methods import diffaugment
from cyclegan_jax.methods import losses
from cyclegan_jax.nets import models
from cyclegan_jax.studies import recipes
from cyclegan_jax.train import checkpoints
from cyclegan_jax.train import loop as train_lib
from cyclegan_jax.train import step as step_lib
from tests.test_train import batches
from tests.test_train import mesh_of

IMAGE = (16, 16, 3)
POLICY = ('color', 'translation', 'cutout')


def tiny_config(**overrides):
  """The tiny config, no pool, with `overrides` ('optim.lr_D_scale': 2.0, ...)."""
  config = tiny.get_config()
  config.pool_size = 0
  return recipes.apply(config, overrides)


def tiny_networks(config):
  """The config's networks with a one-block generator (compiles in seconds)."""
  networks = step_lib.create_networks(config, epoch_length=10)
  return dataclasses.replace(
    networks, generator=models.ResnetGenerator(ngf=4, num_blocks=1)
  )


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
  with pytest.raises(ValueError) as raised:
    config_checks.validate(ml_collections.ConfigDict(tree))
  message = str(raised.value)
  assert message.startswith(f'config.{field}=') and '\n' not in message, message
  return message


def test_defaults_leave_the_state_and_the_checkpoint_layout_as_they_were():
  config = tiny_config()
  networks = step_lib.create_networks(config, epoch_length=10)
  assert networks.augment == () and networks.lr_D_scale == 1.0
  assert networks.discriminator.spectral_norm is False
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh_of(1), image_shape=IMAGE, pool_size=0
  )
  assert state.critic_stats == {}
  replicated = step_lib.replicated_items(state, cycle_gan.METHOD)
  assert sorted(replicated) == ['opt_state_d', 'opt_state_g', 'step']
  assert sorted(step_lib.per_device_items(state, cycle_gan.METHOD)) == ['rng']


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
    ('model.spectral_norm_D', 1),
    ('model.norm_D', 'group'),
  ],
)
def test_bad_switch_values_are_refused(field, value):
  refused(field, value)


def test_a_critic_without_instance_norm_sees_a_contrast_change():
  """At init (zero biases) the layers are positively homogeneous: scaling the image by
  c scales every pre-norm map by c. Instance norm removes that, so the paper's critic
  gives the same logits; the plain critic's logits scale by c."""
  x = jax.random.uniform(jax.random.key(0), (1, 32, 32, 3), minval=-1, maxval=1)
  for norm, want in (('instance', 1.0), ('none', 0.5)):
    critic = models.PatchDiscriminator(ndf=4, num_layers=2, norm=norm)
    # Kernels ×20 so that the maps' variances dwarf the norm's epsilon.
    variables = jax.tree.map(lambda v: 20.0 * v, critic.init(jax.random.key(1), x))
    logits, scaled = critic.apply(variables, x), critic.apply(variables, 0.5 * x)
    np.testing.assert_allclose(scaled, want * logits, rtol=1e-3, atol=1e-6)
  paper = models.PatchDiscriminator(ndf=4, num_layers=2)
  plain = models.PatchDiscriminator(ndf=4, num_layers=2, norm='none')
  paper_vars, plain_vars = (net.init(jax.random.key(1), x) for net in (paper, plain))
  assert jax.tree.map(jnp.shape, paper_vars) == jax.tree.map(jnp.shape, plain_vars)
  # He init: each layer keeps the scale that no norm restores.
  logits = plain.apply(plain_vars, x)
  assert 0.05 < float(jnp.std(logits)) < 5.0
  built = models.discriminator_from_config(tiny_config(**{'model.norm_D': 'none'}).model)
  assert built.norm == 'none'


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
  params = cycle_gan.init_params(networks, jax.random.key(0), IMAGE)
  d_params = {k: params[k] for k in cycle_gan.DISCRIMINATORS}
  (a, b), (fa, fb) = ((jnp.asarray(x[k]) for k in 'AB') for x in batches(2, 2))
  total, terms = cycle_gan.discriminator_losses(d_params, a, b, fa, fb, networks=networks)
  critic = lambda x: networks.discriminator.apply({'params': d_params['D_A']}, x)
  _, penalty_a = losses.r1_penalty(critic, b)
  np.testing.assert_allclose(terms['loss_R1_A'], 5.0 * penalty_a, rtol=1e-5)
  assert terms['loss_R1_A'] > 0 and terms['loss_R1_B'] > 0
  np.testing.assert_allclose(
    total,
    terms['loss_D_A'] + terms['loss_D_B'] + terms['loss_R1_A'] + terms['loss_R1_B'],
    rtol=1e-6,
  )


def test_two_steps_with_r1_and_ttur():
  _, _, metrics = train(tiny_config(**{'loss.r1_gamma': 1.0, 'optim.lr_D_scale': 2.0}))
  assert all(np.isfinite(v) for m in metrics for v in m.values())
  assert metrics[1]['loss_R1_A'] > 0 and metrics[1]['loss_R1_B'] > 0
  assert metrics[0]['learning_rate_D'] == pytest.approx(2 * metrics[0]['learning_rate'])


# --------------------------------------------------------------------------------------
# DiffAugment
# --------------------------------------------------------------------------------------


def numbered_images(batch=3, size=16):
  """Images whose pixels are all distinct and positive (so a moved pixel is traceable)."""
  x = np.arange(1, batch * size * size * 3 + 1, dtype=np.float32)
  return jnp.asarray(x.reshape(batch, size, size, 3))


@pytest.mark.parametrize('policy', [('color',), ('translation',), ('cutout',), POLICY])
def test_augment_keeps_shape_and_is_deterministic_given_a_key(policy):
  x = jnp.asarray(batches(1, 4)[0]['A'])
  out = diffaugment.augment(x, jax.random.key(3), policy)
  assert out.shape == x.shape and out.dtype == x.dtype
  np.testing.assert_array_equal(out, diffaugment.augment(x, jax.random.key(3), policy))
  assert not np.allclose(out, diffaugment.augment(x, jax.random.key(4), policy))


def test_translation_shifts_by_at_most_an_eighth_with_zero_fill():
  x = numbered_images()
  out = np.asarray(diffaugment.translation(x, jax.random.key(0)))
  flat = np.asarray(x).reshape(-1)
  shifts = set()
  for n in range(x.shape[0]):
    for i, j in zip(*np.nonzero(out[n, :, :, 0])):
      source = np.argwhere(np.asarray(x[n, :, :, 0]) == out[n, i, j, 0])[0]
      shifts.add((n, source[0] - i, source[1] - j))
  per_image = {n: {(dy, dx) for m, dy, dx in shifts if m == n} for n in range(3)}
  assert all(len(s) == 1 for s in per_image.values()), per_image  # One shift each.
  assert all(abs(dy) <= 2 and abs(dx) <= 2 for _, dy, dx in shifts)  # 16 px / 8.
  assert set(out[out != 0]) <= set(flat)
  assert len({next(iter(s)) for s in per_image.values()}) > 1  # Images draw apart.


def test_cutout_zeroes_one_square_of_half_the_side_at_most():
  x = numbered_images(batch=8)
  out = np.asarray(diffaugment.cutout(x, jax.random.key(0)))
  for n in range(8):
    zero = out[n, :, :, 0] == 0
    rows, cols = np.nonzero(zero)
    assert 0 < zero.sum() <= 64
    # A rectangle (the square clipped by the border), the same for every channel.
    assert zero.sum() == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
    assert np.ptp(rows) < 8 and np.ptp(cols) < 8
    assert np.all((out[n] == 0) == zero[..., None])
    np.testing.assert_array_equal(out[n][~zero], np.asarray(x[n])[~zero])


def test_gradient_reaches_the_generators_through_the_augmentation():
  """With only the adversarial terms, the generators' gradient passes the augmentation."""
  config = tiny_config(
    **{
      'augment.policy': ','.join(POLICY),
      'loss.lambda_A': 0.0,
      'loss.lambda_B': 0.0,
      'loss.lambda_identity': 0.0,
    }
  )
  networks = tiny_networks(config)
  params = cycle_gan.init_params(networks, jax.random.key(0), IMAGE)
  g = {k: params[k] for k in cycle_gan.GENERATORS}
  d = {k: params[k] for k in cycle_gan.DISCRIMINATORS}
  a, b = (jnp.asarray(batches(1, 2)[0][k]) for k in 'AB')
  loss = lambda p, key: cycle_gan.generator_losses(
    p, d, a, b, networks=networks, augment_key=key
  )[0]
  value_and_grad = jax.jit(jax.value_and_grad(loss))
  value, grads = value_and_grad(g, jax.random.key(1))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(grads))
  assert float(np.abs(grads['G_A']['head']['kernel']).max()) > 0
  # The critics see other draws under another key: the loss differs.
  assert float(value) != float(value_and_grad(g, jax.random.key(2))[0])


def test_augment_policy_is_validated():
  assert diffaugment.parse_policy('') == ()
  assert diffaugment.parse_policy('color, cutout') == ('color', 'cutout')
  for bad in ('flip', 'color,color'):
    with pytest.raises(ValueError, match='augment.policy'):
      diffaugment.parse_policy(bad)
    refused('augment.policy', bad)
  config = default.get_config()
  config.augment.policy = 'translation,color,cutout'
  config_checks.validate(config)


def test_augment_keys_differ_per_device_and_step():
  mesh = mesh_of(4)
  networks = tiny_networks(tiny_config(**{'augment.policy': 'color'}))
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=IMAGE, pool_size=0
  )

  def keys(state):
    return jnp.stack(
      [jax.random.key_data(k) for k in cycle_gan._augment_keys(state, 'data')]
    )[None]

  per_device = jax.jit(
    jax.shard_map(
      keys,
      mesh=mesh,
      in_specs=(step_lib._state_specs(state, cycle_gan.METHOD),),
      out_specs=P('data'),
    )
  )
  now = np.asarray(per_device(state)).reshape(4 * 2, -1)
  later = np.asarray(per_device(state.replace(step=state.step + 1))).reshape(4 * 2, -1)
  assert len({tuple(k) for k in np.concatenate([now, later])}) == 16
  np.testing.assert_array_equal(now, np.asarray(per_device(state)).reshape(4 * 2, -1))


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_two_steps_with_diffaugment_and_a_pool():
  _, _, metrics = train(
    tiny_config(**{'augment.policy': ','.join(POLICY), 'pool_size': 2})
  )
  assert all(np.isfinite(v) for m in metrics for v in m.values())


@pytest.mark.slow
def test_two_steps_with_diffaugment_on_four_devices_are_reproducible():
  config = tiny_config(**{'augment.policy': ','.join(POLICY), 'pool_size': 2})
  runs = [train(config, n_devices=4) for _ in range(2)]
  (_, state, metrics), (_, again, metrics_again) = runs
  assert all(np.isfinite(v) for m in metrics for v in m.values())
  for x, y in zip(jax.tree.leaves(state.params), jax.tree.leaves(again.params)):
    np.testing.assert_array_equal(x, y)
  assert metrics == metrics_again


# --------------------------------------------------------------------------------------
# Spectral norm
# --------------------------------------------------------------------------------------


def test_power_iterations_find_the_top_singular_value():
  kernel = jax.random.normal(jax.random.key(0), (4, 4, 3, 8))
  u = models._l2_normalize(jax.random.normal(jax.random.key(1), (8,)))
  for _ in range(100):
    u, sigma = models.spectral_power_iteration(kernel, u)
  matrix = np.asarray(kernel).reshape(-1, 8)
  np.testing.assert_allclose(sigma, np.linalg.svd(matrix)[1][0], rtol=1e-4)
  np.testing.assert_allclose(np.linalg.svd(matrix / sigma)[1][0], 1.0, rtol=1e-4)


def test_spectral_norm_keeps_the_critics_parameter_names_and_initial_values():
  x = jnp.zeros((1, *IMAGE))
  plain = models.PatchDiscriminator(ndf=4, num_layers=2, conv_impl='xla')
  normed = models.PatchDiscriminator(ndf=4, num_layers=2, spectral_norm=True)
  want = plain.init(jax.random.key(0), x)
  got = normed.init(jax.random.key(0), x)
  assert set(want) == {'params'}
  jax.tree.map(np.testing.assert_array_equal, got['params'], want['params'])
  assert sorted(got['batch_stats']) == ['conv_0', 'conv_1', 'conv_2', 'conv_3']
  for layer, stats in got['batch_stats'].items():
    assert stats['u'].shape == (want['params'][layer]['kernel'].shape[-1],)
  # The normalised critic computes the plain one with each kernel divided by its σ.
  image = jnp.asarray(batches(1, 2)[0]['A'])
  divided = {
    layer: {
      'kernel': p['kernel']
      / models.spectral_power_iteration(p['kernel'], got['batch_stats'][layer]['u'])[1],
      'bias': p['bias'],
    }
    for layer, p in got['params'].items()
  }
  np.testing.assert_allclose(
    normed.apply(got, image), plain.apply({'params': divided}, image), atol=1e-5
  )


@pytest.fixture(scope='module')
def spectral_run():
  """Two steps with spectral norm on 4 devices: (initial params, final state)."""
  config = tiny_config(**{'model.spectral_norm_D': True})
  initial, state, metrics = train(config, n_devices=4)
  assert all(np.isfinite(v) for m in metrics for v in m.values())
  return config, initial, state


def test_spectral_state_advances_and_replicas_stay_equal(spectral_run):
  _, _, state = spectral_run
  networks = tiny_networks(tiny_config(**{'model.spectral_norm_D': True}))
  _, start = cycle_gan.init_variables(networks, jax.random.key(0, impl='rbg'), IMAGE)
  for u in jax.tree.leaves(state.critic_stats):
    shards = [np.asarray(s.data) for s in u.addressable_shards]
    assert len(shards) == 4
    for shard in shards[1:]:
      np.testing.assert_array_equal(shard, shards[0])
    np.testing.assert_allclose(np.linalg.norm(shards[0]), 1.0, rtol=1e-5)
  moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), state.critic_stats, start)
  assert max(jax.tree.leaves(moved)) > 1e-3, moved


def test_spectral_state_is_saved_and_restored(spectral_run, tmp_path):
  config, _, state = spectral_run
  manager = checkpoints.create_manager(str(tmp_path))
  train_lib.save_checkpoint(manager, state, config)
  manager.wait_until_finished()
  fresh = step_lib.create_train_state(
    tiny_networks(config), seed=1, mesh=mesh_of(4), image_shape=IMAGE, pool_size=0
  )
  restored = train_lib.restore_checkpoint(manager, fresh, 2, cycle_gan.METHOD)
  manager.close()
  for x, y in zip(
    jax.tree.leaves(restored.critic_stats), jax.tree.leaves(state.critic_stats)
  ):
    np.testing.assert_array_equal(x, y)
  # A run without spectral norm refuses this checkpoint by name (it is not damaged).
  plain = tiny_config()
  with pytest.raises(train_lib.NetworkMismatchError, match='model.spectral_norm_D'):
    manager = checkpoints.create_manager(str(tmp_path), create=False)
    try:
      train_lib.check_same_networks(manager, 2, plain, fresh, str(tmp_path))
    finally:
      manager.close()


# --------------------------------------------------------------------------------------
# All of them in the training loop
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_loop_with_every_critic_switch_resumes_where_it_stopped(tmp_path):
  """The tiny config's loop with every critic switch, the curve head and the patch loss
  on: 2 + 2 steps equal 4 straight steps (the critics' state, the augmentation's keys,
  the patch loss's histories and the rates continue on resume)."""
  config = tiny_config(
    **{
      'augment.policy': ','.join(POLICY),
      'model.spectral_norm_D': True,
      'model.norm_D': 'none',
      'model.head': 'curve',
      'loss.lambda_identity': 0.0,
      'loss.r1_gamma': 1.0,
      'loss.lambda_swd': 1.0,
      'loss.swd_bank': 3,
      'optim.lr_D_scale': 2.0,
      'optim.lr_batch_scaling': 'sqrt',
      'num_train_steps': 4,
      'pool_size': 2,
    }
  )
  straight = train_lib.train_and_evaluate(config, str(tmp_path / 'straight'))
  workdir = str(tmp_path / 'resumed')
  train_lib.train_and_evaluate(config, workdir, max_steps=2)
  resumed = train_lib.train_and_evaluate(config, workdir)
  assert int(resumed.step) == 4
  assert sorted(resumed.banks) == ['fake_A', 'fake_B', 'real_A', 'real_B']
  for a, b in (
    (straight.params, resumed.params),
    (straight.critic_stats, resumed.critic_stats),
    (straight.banks, resumed.banks),
  ):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(x, y, atol=1e-6)
