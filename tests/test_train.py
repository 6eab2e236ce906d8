"""The train step: plain-computation check, data-parallel equivalence, schedule, memory."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from cyclegan_jax.nets import models
from cyclegan_jax.studies import recipes
from cyclegan_jax.train import step as step_lib

IMAGE = (16, 16, 3)
D_LAYERS = 2


def tiny_config(**overrides):
  """The shared tiny config with a 100-step schedule and no pool."""
  config = tiny.get_config()
  config.num_train_steps = 100
  config.pool_size = 0
  return recipes.apply(config, overrides)


def tiny_networks(config, epoch_length=10):
  networks = step_lib.create_networks(config, epoch_length)
  return dataclasses.replace(
    networks,
    generator=models.ResnetGenerator(ngf=4, num_blocks=1),
    discriminator=models.PatchDiscriminator(ndf=4, num_layers=D_LAYERS),
  )


def mesh_of(n):
  return jax.make_mesh((n,), ('data',), devices=jax.devices()[:n])


def batches(n_steps, batch_size, seed=0):
  rng = np.random.default_rng(seed)
  return [
    {k: rng.uniform(-1, 1, (batch_size, *IMAGE)).astype(np.float32) for k in 'AB'}
    for _ in range(n_steps)
  ]


def run(config, n_devices, data, networks=None):
  """Trains on `data`; returns the final state, per-step metrics, per-step params, step."""
  networks = networks or tiny_networks(config)
  mesh = mesh_of(n_devices)
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=IMAGE, pool_size=config.pool_size
  )
  step = step_lib.make_parallel_train_step(networks, mesh, state)
  metrics, params = [], [jax.device_get(state.params)]
  for batch in step_lib.device_batches(data, mesh):
    state, m = step(state, batch)
    metrics.append(jax.device_get(m))
    params.append(jax.device_get(state.params))
  return state, metrics, params, step


def is_pre_norm_bias(path) -> bool:
  """A conv bias followed by InstanceNorm: it cannot change any output.

  Its gradient is zero up to float noise, and Adam turns noise into steps of up to
  ±lr, so these biases can only be compared for staying within that bound.
  """
  keys = [p.key for p in path]
  if keys[-1] != 'bias':
    return False
  if keys[0].startswith('G'):
    return keys[1] != 'head'
  return keys[1] not in ('conv_0', f'conv_{D_LAYERS + 1}')


def adam_rounding_bound(
  grad: np.ndarray, lr: float = 2e-4, eps: float = 1e-8, grad_rtol: float = 1e-4
) -> np.ndarray:
  """Per element, how far Adam's first step can carry float rounding in the gradient.

  Two runs that compute the same gradient up to rounding, δg (taken as `grad_rtol` · the
  tensor's largest |g|: the same sums in another order, on another CPU's kernels, or
  split over devices), need not take the same first step where an element's gradient is
  near zero: −lr·g/(|g| + eps) has slope lr·eps/(|g| + eps)² in g, nothing where
  |g| ≫ eps and up to ±lr within a few eps of zero (at most 2·lr apart).
  """
  grad = np.abs(np.asarray(grad))
  dg = grad_rtol * grad.max()
  return np.minimum(2 * lr, lr * eps * dg / (grad + eps) ** 2)


def assert_first_steps_close(
  have: np.ndarray, want: np.ndarray, grad: np.ndarray, name: str
) -> None:
  """Parameters after Adam's first step equal to rounding: rtol 1e-5, atol 1e-6, plus
  what Adam's step makes of the gradient's rounding (`adam_rounding_bound`)."""
  have, want = np.asarray(have), np.asarray(want)
  excess = np.abs(have - want) - (1e-6 + 1e-5 * np.abs(want) + adam_rounding_bound(grad))
  assert np.all(excess <= 0), (name, np.max(excess))


@pytest.fixture(scope='module')
def parallel_runs():
  """The same 3 steps (4 pairs each, no pool) on 1 device and on 4 devices."""
  config = tiny_config()
  data = batches(3, 4)
  networks = tiny_networks(config)
  return data, networks, run(config, 1, data, networks), run(config, 4, data, networks)


@pytest.fixture(scope='module')
def first_step_plain(parallel_runs):
  """Step 1's loss terms and gradients recomputed here without the library."""
  data, networks, (_, _, params, _), _ = parallel_runs
  params0 = params[0]

  a, b = jnp.asarray(data[0]['A']), jnp.asarray(data[0]['B'])
  G = lambda p, x: networks.generator.apply({'params': p}, x)
  D = lambda p, x: networks.discriminator.apply({'params': p}, x)
  mse = lambda x, t: jnp.mean((x - t) ** 2)
  l1 = lambda x, y: jnp.mean(jnp.abs(x - y))

  def g_loss(gp):
    fake_b, fake_a = G(gp['G_A'], a), G(gp['G_B'], b)
    terms = dict(
      loss_G_A=mse(D(params0['D_A'], fake_b), 1.0),
      loss_G_B=mse(D(params0['D_B'], fake_a), 1.0),
      loss_cycle_A=10.0 * l1(G(gp['G_B'], fake_b), a),
      loss_cycle_B=10.0 * l1(G(gp['G_A'], fake_a), b),
      loss_idt_A=10.0 * 0.5 * l1(G(gp['G_A'], b), b),
      loss_idt_B=10.0 * 0.5 * l1(G(gp['G_B'], a), a),
    )
    return sum(terms.values()), (terms, fake_a, fake_b)

  g_params0 = {k: params0[k] for k in ('G_A', 'G_B')}
  g_grads, (g_terms, fake_a, fake_b) = jax.jit(jax.grad(g_loss, has_aux=True))(g_params0)

  def d_loss(dp):
    return 0.5 * (mse(D(dp['D_A'], b), 1.0) + mse(D(dp['D_A'], fake_b), 0.0)) + 0.5 * (
      mse(D(dp['D_B'], a), 1.0) + mse(D(dp['D_B'], fake_a), 0.0)
    )

  d_params0 = {k: params0[k] for k in ('D_A', 'D_B')}
  d_grads = jax.jit(jax.grad(d_loss))(d_params0)
  return g_terms, jax.device_get({**g_grads, **d_grads})


def test_one_step_matches_plain_computation(parallel_runs, first_step_plain):
  """Losses and the Adam update of one step, recomputed here without the library."""
  _, _, (_, metrics, params, _), _ = parallel_runs
  g_terms, grads = first_step_plain
  for name, value in g_terms.items():
    np.testing.assert_allclose(metrics[0][name], value, rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(metrics[0]['learning_rate'], 2e-4)
  # Adam's first step: m̂ = g, v̂ = g², so the update is -lr · g / (|g| + eps).
  adam_step = lambda p, g: p - 2e-4 * g / (jnp.abs(g) + 1e-8)
  expected = jax.tree.map(adam_step, params[0], grads)
  got = params[1]
  checked = 0
  for (path, want), have, grad in zip(
    jax.tree_util.tree_leaves_with_path(expected),
    jax.tree.leaves(got),
    jax.tree.leaves(grads),
  ):
    if is_pre_norm_bias(path):
      assert np.max(np.abs(have - np.asarray(want))) <= 2 * 2e-4 + 1e-7
    else:
      assert_first_steps_close(have, want, grad, jax.tree_util.keystr(path))
      checked += np.size(have)
  assert checked > 0.95 * sum(np.size(x) for x in jax.tree.leaves(got))


def test_adam_rounding_bound_is_tight_where_gradients_are_large():
  bound = adam_rounding_bound(np.array([1e-3, 1e-4, 1e-6, 1e-8, 0.0]))  # δg = 1e-7.
  # No slack to speak of for |g| ≥ 1e-6; up to ±lr near eps, capped at 2 lr.
  assert bound[0] < 1e-12 and bound[1] < 1e-10 and bound[2] < 3e-7
  assert 1e-5 < bound[3] <= 4e-4 and bound[4] == 4e-4


def test_four_devices_equal_one_device(parallel_runs, first_step_plain):
  """4 devices × 1 pair and 1 device × 4 pairs: the same losses and parameters.

  After step 1 the parameters agree to rounding, as Adam carries it (`adam_rounding_bound`).
  After that an element whose first gradient was within rounding of zero may have stepped
  differently by up to ±lr, which moves every later gradient by more than rounding: the
  3-step parameters are compared for 99.9 % of each tensor within 2e-5, the rest within
  what Adam can step at all (2 lr a step).
  """
  _, _, (_, metrics1, params1, _), (_, metrics4, params4, _) = parallel_runs
  _, grads = first_step_plain
  for m4, m1 in zip(metrics4, metrics1):
    for k in m1:
      np.testing.assert_allclose(m4[k], m1[k], rtol=1e-4, atol=1e-6, err_msg=k)
  for (path, p1), p4, grad in zip(
    jax.tree_util.tree_leaves_with_path(params1[1]),
    jax.tree.leaves(params4[1]),
    jax.tree.leaves(grads),
  ):
    if not is_pre_norm_bias(path):
      assert_first_steps_close(p4, p1, grad, jax.tree_util.keystr(path))
  for (path, p1), p4 in zip(
    jax.tree_util.tree_leaves_with_path(params1[-1]), jax.tree.leaves(params4[-1])
  ):
    diff = np.abs(p1 - p4)
    assert np.max(diff) < 3 * 2 * 2e-4, jax.tree_util.keystr(path)
    if not is_pre_norm_bias(path):
      assert np.mean(diff < 2e-5) >= 0.999, (
        jax.tree_util.keystr(path),
        np.mean(diff < 2e-5),
      )
  # The parameters did move: the comparison is not between two initial states.
  assert _param_diff(params1[0], params1[-1]) > 1e-4


def _param_diff(a, b):
  return max(
    jax.tree.leaves(jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b))
  )


@pytest.mark.slow
def test_pooled_step_runs_on_four_devices_with_private_pools():
  config = tiny_config(pool_size=3)
  networks = tiny_networks(config)
  mesh = mesh_of(4)
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=IMAGE, pool_size=3
  )
  step = step_lib.make_parallel_train_step(networks, mesh, state)
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
    lambda event, duration, **kw: (
      compiles.append(event)
      if event == '/jax/core/compile/backend_compile_duration'
      else None
    )
  )
  metrics = []
  for i, batch in enumerate(step_lib.device_batches(batches(4, 8), mesh)):
    state, m = step(state, batch)
    metrics.append(jax.device_get(m))
    if i == 0:
      first = len(compiles)
  assert first >= 1 and len(compiles) == first, 'the step recompiled after step 1'
  assert state.pools['A'].images.shape == (4 * 3, *IMAGE)
  np.testing.assert_array_equal(np.asarray(state.pools['A'].count), [3, 3, 3, 3])
  assert all(np.isfinite(v) for m in metrics for v in m.values())
  # Each device drew its own pool samples: the four pools differ.
  pools = np.asarray(state.pools['A'].images).reshape(4, 3, -1)
  assert not np.allclose(pools[0], pools[1])


@pytest.mark.slow
def test_memory_does_not_grow_across_steps():
  config = tiny_config(pool_size=2)
  networks = tiny_networks(config)
  mesh = mesh_of(1)
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=IMAGE, pool_size=2
  )
  step = step_lib.make_parallel_train_step(networks, mesh, state)
  sizes = []
  for batch in step_lib.device_batches(batches(8, 2), mesh, prefetch=0):
    state, metrics = step(state, batch)
    del metrics
    jax.block_until_ready(state)
    del batch
    sizes.append(sum(x.nbytes for x in jax.live_arrays()))
  assert len(set(sizes[2:])) == 1, sizes


def test_schedule_matches_reference_linear_policy():
  config = tiny_config(num_train_steps=-1, num_epochs=3, num_epochs_decay=2, batch_size=2)
  schedule = step_lib.create_learning_rate_schedule(
    config, epoch_length=10
  )  # 5 steps/epoch.
  lrs = np.array([float(schedule(s)) for s in range(25)])
  # Epochs 0..2 constant, then 1 - k/3 for k = 1, 2 (the reference's lambda_rule).
  expected = 2e-4 * np.repeat([1, 1, 1, 2 / 3, 1 / 3], 5)
  np.testing.assert_allclose(lrs, expected, rtol=1e-6)
  assert step_lib.total_steps(config, 10) == 25

  # num_train_steps overrides the epochs with the same shape: 400 steps = 200 "epochs"
  # of 2 steps; per-step granularity interpolates inside an epoch.
  config = tiny_config(
    num_train_steps=400,
    num_epochs=100,
    num_epochs_decay=100,
    lr_schedule_granularity='step',
  )
  schedule = step_lib.create_learning_rate_schedule(config, epoch_length=10)
  assert float(schedule(0)) == pytest.approx(2e-4)
  assert float(schedule(198)) == pytest.approx(2e-4)
  assert float(schedule(301)) == pytest.approx(2e-4 * (1 - 51.5 / 101), rel=1e-5)
  assert float(schedule(399)) == pytest.approx(2e-4 * (1 - 100.5 / 101), rel=1e-4)
  config.lr_schedule_granularity = 'epoch'
  schedule = step_lib.create_learning_rate_schedule(config, epoch_length=10)
  assert float(schedule(301)) == pytest.approx(2e-4 * (1 - 51 / 101), rel=1e-5)
  assert float(schedule(399)) == pytest.approx(2e-4 / 101, rel=1e-4)


def test_batch_size_must_divide_by_devices():
  with pytest.raises(ValueError, match='does not divide by the 4 devices'):
    step_lib.check_batch_size(6, 4, 1)


@pytest.mark.slow
def test_bfloat16_step_stays_close_to_float32():
  """bfloat16 compute, float32 parameters/optimiser/losses: the same step within bf16 noise."""
  data = batches(2, 2)
  runs = {}
  for dtype in ('float32', 'bfloat16'):
    config = tiny_config()
    networks = dataclasses.replace(
      tiny_networks(config),
      generator=models.ResnetGenerator(ngf=4, num_blocks=1, dtype=dtype),
      discriminator=models.PatchDiscriminator(ndf=4, num_layers=D_LAYERS, dtype=dtype),
    )
    runs[dtype] = run(config, 1, data, networks)
  (_, m32, p32, _), (state16, m16, p16, _) = runs['float32'], runs['bfloat16']
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state16.params))
  assert all(
    x.dtype == jnp.float32
    for x in jax.tree.leaves(state16.opt_state_g)
    if jnp.issubdtype(x.dtype, jnp.floating)
  )  # Adam's moments; `count` is int.
  for name in ('loss_G', 'loss_cycle_A', 'loss_cycle_B', 'loss_D_A', 'loss_D_B'):
    for step in range(2):
      np.testing.assert_allclose(
        m16[step][name], m32[step][name], rtol=3e-2, err_msg=name
      )
  # Parameters move by about lr per step; bfloat16 gradients may flip a few signs. The
  # biases before an InstanceNorm move by noise alone and are left out (is_pre_norm_bias).
  moved, diff = [], []
  for (path, start), end32, end16 in zip(
    jax.tree_util.tree_leaves_with_path(p32[0]),
    jax.tree.leaves(p32[-1]),
    jax.tree.leaves(p16[-1]),
  ):
    if not is_pre_norm_bias(path):
      moved.append(np.mean(np.abs(end32 - start)))
      diff.append(np.mean(np.abs(end16 - end32)))
  assert np.mean(diff) < 0.5 * np.mean(moved), (np.mean(diff), np.mean(moved))
