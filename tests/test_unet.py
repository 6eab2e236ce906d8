"""The U-Net generator, PyTorch's BatchNorm and the pix2pix critics (`nets.unet`,
`nets.norms`, `models.PatchDiscriminator(norm='batch')`, `models.PixelDiscriminator`)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import pytest

from configs import default
from cyclegan_jax.nets import models
from cyclegan_jax.nets import norms
from cyclegan_jax.nets import unet


def num_params(module, shape, **kwargs) -> int:
  variables = jax.eval_shape(
    lambda: module.init(jax.random.key(0), jnp.zeros(shape), **kwargs)
  )
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables['params']))


@pytest.mark.parametrize(
  'num_downs, size, expected', [(8, 256, 54_413_955), (7, 128, 41_828_995)]
)
def test_official_unet_parameter_counts(num_downs, size, expected):
  generator = unet.UnetGenerator(num_downs, 64, 3, 'batch', use_dropout=True)
  assert num_params(generator, (1, size, size, 3)) == expected


def test_official_critic_parameter_counts():
  # pix2pix's conditional critic sees concat(A, B): 6 channels.
  basic = models.PatchDiscriminator(ndf=64, num_layers=3, norm='batch')
  assert num_params(basic, (1, 256, 256, 6)) == 2_768_705
  pixel = models.PixelDiscriminator(ndf=64, norm='batch')
  assert num_params(pixel, (1, 8, 8, 6)) == 6 * 64 + 64 + 64 * 128 + 2 * 128 + 128


def test_parameter_names_and_biases():
  variables = jax.eval_shape(
    lambda: unet.UnetGenerator(6, 2, 3, 'batch', True).init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 3))
    )
  )
  params, stats = variables['params'], variables['batch_stats']
  assert sorted(params) == sorted(
    [f'down_{i}' for i in range(6)]
    + [f'down_{i}_norm' for i in range(1, 5)]
    + [f'up_{i}' for i in range(6)]
    + [f'up_{i}_norm' for i in range(1, 6)]
  )
  assert sorted(stats) == sorted(k for k in params if k.endswith('_norm'))
  # With batch norm only the outermost up conv is biased.
  assert [k for k in params if 'bias' in params[k] and 'norm' not in k] == ['up_0']
  assert params['up_0']['kernel'].shape == (4, 4, 3, 4)  # (kh, kw, out, in)
  assert params['down_0']['kernel'].shape == (4, 4, 3, 2)
  instance = jax.eval_shape(
    lambda: unet.UnetGenerator(5, 2, 3, 'instance').init(
      jax.random.key(0), jnp.zeros((1, 32, 32, 3))
    )
  )
  assert 'batch_stats' not in instance
  assert all('bias' in p for p in instance['params'].values())


def test_init_values():
  variables = unet.UnetGenerator(5, 8, 3, 'batch').init(
    jax.random.key(0), jnp.zeros((1, 32, 32, 3))
  )
  scale = np.asarray(variables['params']['up_1_norm']['scale'])
  kernel = np.asarray(variables['params']['down_2']['kernel'])
  assert abs(scale.mean() - 1) < 0.02 and 0.005 < scale.std() < 0.04
  assert abs(kernel.std() - 0.02) < 0.003
  np.testing.assert_array_equal(variables['params']['up_0']['bias'], 0)
  np.testing.assert_array_equal(variables['batch_stats']['up_1_norm']['mean'], 0)
  np.testing.assert_array_equal(variables['batch_stats']['up_1_norm']['var'], 1)


def test_shapes_and_sizes():
  generator = unet.UnetGenerator(5, 2, 1, 'batch')
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 32, 64, 3)), jnp.float32)
  variables = generator.init(jax.random.key(0), x)
  y = generator.apply(variables, x)
  assert y.shape == (2, 32, 64, 1) and y.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(y))) <= 1.0
  with pytest.raises(ValueError, match='divisible by 32, got 48x64'):
    generator.apply(variables, jnp.zeros((1, 48, 64, 3)))


def test_bfloat16_compute_keeps_float32_params_and_output():
  generator = unet.UnetGenerator(5, 2, 3, 'batch', dtype=jnp.bfloat16)
  x = jnp.zeros((2, 32, 32, 3))
  variables = generator.init(jax.random.key(0), x)
  assert {p.dtype for p in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  y, updates = generator.apply(
    variables, x, use_running_average=False, mutable=['batch_stats']
  )
  assert y.dtype == jnp.float32
  assert {p.dtype for p in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}


def test_running_statistics_update_only_when_mutable():
  generator = unet.UnetGenerator(5, 2, 3, 'batch')
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 32, 32, 3)), jnp.float32)
  variables = generator.init(jax.random.key(0), x)
  stats = variables['batch_stats']
  # The official test-time default: batch statistics, nothing written.
  batch_mode = generator.apply(variables, x, use_running_average=False)
  assert batch_mode.shape == x.shape
  _, updates = generator.apply(
    variables, x, use_running_average=False, mutable=['batch_stats']
  )
  changed = jax.tree.map(
    lambda a, b: bool(jnp.any(a != b)), stats, updates['batch_stats']
  )
  assert all(jax.tree.leaves(changed))
  y, same = generator.apply(variables, x, mutable=['batch_stats'])
  jax.tree.map(np.testing.assert_array_equal, stats, same['batch_stats'])
  # Running statistics (0 mean, unit variance at init) differ from the batch's.
  assert float(jnp.max(jnp.abs(y - batch_mode))) > 1e-3


def test_batch_norm_matches_pytorch_formulas():
  rng = np.random.default_rng(2)
  x = rng.normal(3.0, 2.0, (4, 5, 3, 6)).astype(np.float32)
  bn = norms.BatchNorm()
  variables = bn.init(jax.random.key(0), x)
  scale = rng.normal(1, 0.5, 6).astype(np.float32)
  bias = rng.normal(0, 0.5, 6).astype(np.float32)
  run_mean = rng.normal(0, 1, 6).astype(np.float32)
  run_var = rng.uniform(0.5, 2, 6).astype(np.float32)
  variables = {
    'params': {'scale': scale, 'bias': bias},
    'batch_stats': {'mean': run_mean, 'var': run_var},
  }
  y, updates = bn.apply(variables, x, use_running_average=False, mutable=['batch_stats'])
  x64 = x.astype(np.float64)
  mean = x64.mean(axis=(0, 1, 2))
  biased = x64.var(axis=(0, 1, 2))
  unbiased = x64.var(axis=(0, 1, 2), ddof=1)
  expected = (x64 - mean) / np.sqrt(biased + 1e-5) * scale + bias
  np.testing.assert_allclose(y, expected, atol=1e-5)
  np.testing.assert_allclose(
    updates['batch_stats']['mean'], 0.9 * run_mean + 0.1 * mean, rtol=1e-6, atol=1e-6
  )
  np.testing.assert_allclose(
    updates['batch_stats']['var'], 0.9 * run_var + 0.1 * unbiased, rtol=1e-6
  )
  y_eval = bn.apply(variables, x)
  expected_eval = (x64 - run_mean) / np.sqrt(run_var + 1e-5) * scale + bias
  np.testing.assert_allclose(y_eval, expected_eval, atol=1e-5)


def test_batch_statistics_of_the_global_batch_across_devices():
  """4 devices with a quarter of the batch each equal 1 device with all of it."""
  devices = jax.devices()[:4]
  assert len(devices) == 4, 'tests/conftest.py forces 4 CPU devices'
  mesh = jax.sharding.Mesh(np.asarray(devices), ('data',))
  x = jnp.asarray(np.random.default_rng(3).normal(1, 2, (8, 32, 32, 3)), jnp.float32)
  single = unet.UnetGenerator(5, 2, 3, 'batch', use_dropout=False)
  synced = single.clone(axis_name='data')
  variables = single.init(jax.random.key(0), x)

  def train_mode(module):
    def fn(variables, x):
      return module.apply(
        variables, x, use_running_average=False, mutable=['batch_stats']
      )

    return fn

  y1, s1 = jax.jit(train_mode(single))(variables, x)
  sharded = jax.shard_map(
    train_mode(synced),
    mesh=mesh,
    in_specs=(P(), P('data')),
    out_specs=(P('data'), P()),
  )
  y4, s4 = jax.jit(sharded)(variables, x)
  np.testing.assert_allclose(y4, y1, atol=2e-5)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), s4, s1
  )
  # Without the axis each device normalises with its own quarter: different.
  unsynced = jax.shard_map(
    train_mode(single),
    mesh=mesh,
    in_specs=(P(), P('data')),
    out_specs=(P('data'), P('data')),
  )
  y_local, _ = jax.jit(unsynced)(variables, x)
  assert float(jnp.max(jnp.abs(y_local - y1))) > 1e-3


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_critics_sync_batch_statistics_too():
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:4]), ('data',))
  x = jnp.asarray(np.random.default_rng(4).normal(size=(8, 16, 16, 6)), jnp.float32)
  for critic in (
    models.PatchDiscriminator(ndf=4, num_layers=2, norm='batch'),
    models.PixelDiscriminator(ndf=4, norm='batch'),
  ):
    variables = critic.init(jax.random.key(0), x)

    def fn(variables, x, critic):
      return critic.apply(variables, x, False, mutable=['batch_stats'])

    y1, s1 = fn(variables, x, critic)
    y4, s4 = jax.shard_map(
      functools.partial(fn, critic=critic.clone(axis_name='data')),
      mesh=mesh,
      in_specs=(P(), P('data')),
      out_specs=(P('data'), P()),
    )(variables, x)
    np.testing.assert_allclose(y4, y1, atol=2e-5)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), s4, s1
    )


def test_dropout_on_and_off():
  generator = unet.UnetGenerator(6, 2, 3, 'batch', use_dropout=True)
  x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 64, 64, 3)), jnp.float32)
  variables = generator.init(jax.random.key(0), x)

  def run(key=None, deterministic=False):
    rngs = {} if key is None else {'dropout': key}
    return generator.apply(
      variables, x, use_running_average=False, deterministic=deterministic, rngs=rngs
    )

  a, b = run(jax.random.key(1)), run(jax.random.key(1))
  np.testing.assert_array_equal(a, b)  # Seeded: reruns match.
  c = run(jax.random.key(2))
  assert float(jnp.max(jnp.abs(a - c))) > 1e-4
  off = run(deterministic=True)
  assert float(jnp.max(jnp.abs(a - off))) > 1e-4
  no_dropout = generator.clone(use_dropout=False)
  np.testing.assert_array_equal(
    no_dropout.apply(
      variables,
      x,
      use_running_average=False,
      deterministic=False,
      rngs={'dropout': jax.random.key(1)},
    ),
    off,
  )
  with pytest.raises(Exception, match='dropout'):
    run()  # Dropout active needs its RNG stream.


def test_dropout_only_in_the_inner_blocks():
  assert list(unet.dropout_blocks(8)) == [4, 5, 6]  # The reference's num_downs - 5.
  assert list(unet.dropout_blocks(7)) == [4, 5]
  calls = []

  def spy(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dropout):
      calls.append(context.module.name)
    return next_fun(*args, **kwargs)

  generator = unet.UnetGenerator(7, 2, 3, 'batch', use_dropout=True)
  x = jnp.zeros((1, 128, 128, 3))
  variables = jax.eval_shape(lambda: generator.init(jax.random.key(0), x))
  with nn.intercept_methods(spy):
    jax.eval_shape(
      lambda v: generator.apply(
        v, x, deterministic=False, rngs={'dropout': jax.random.key(0)}
      ),
      variables,
    )
  assert calls == ['up_5_dropout', 'up_4_dropout']


def model_config(**fields) -> ml_collections.ConfigDict:
  config = default.get_config().model
  config.update(fields)
  return config


def test_from_config_dispatch():
  g = models.generator_from_config(
    model_config(netG='unet_128', ngf=8, norm='batch', use_dropout=True),
    axis_name='data',
  )
  assert isinstance(g, unet.UnetGenerator)
  assert (g.num_downs, g.ngf, g.norm, g.use_dropout, g.axis_name) == (
    7,
    8,
    'batch',
    True,
    'data',
  )
  assert models.generator_from_config(model_config(netG='unet_256')).num_downs == 8
  d = models.discriminator_from_config(model_config(netD='pixel', norm_D='batch'))
  assert isinstance(d, models.PixelDiscriminator) and d.norm == 'batch'
  d = models.discriminator_from_config(model_config(norm_D='batch'), axis_name='x')
  assert isinstance(d, models.PatchDiscriminator) and d.axis_name == 'x'
  for fields in ({'norm': 'batch'}, {'use_dropout': True}):
    with pytest.raises(ValueError, match='use a U-Net') as e:
      models.generator_from_config(model_config(netG='resnet_9blocks', **fields))
    assert '\n' not in str(e.value)


def test_batch_norm_critic_drops_inner_biases():
  params = jax.eval_shape(
    lambda: models.PatchDiscriminator(ndf=4, num_layers=3, norm='batch').init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 6))
    )
  )['params']
  assert {k for k, v in params.items() if 'bias' in v} == {
    'conv_0',
    'conv_4',
    *(f'norm_{n}' for n in (1, 2, 3)),
  }
  pixel = jax.eval_shape(
    lambda: models.PixelDiscriminator(ndf=4, norm='batch').init(
      jax.random.key(0), jnp.zeros((1, 8, 8, 6))
    )
  )['params']
  assert sorted(pixel) == ['conv_0', 'conv_1', 'conv_2', 'norm_1']
  assert 'bias' not in pixel['conv_2'] and 'bias' in pixel['conv_0']


@pytest.mark.slow  # Over 8 s on 2 cores.
def test_conv_forms_give_the_plain_layers_result_and_parameters():
  """conv_impl='cpu' (sub-pixel transposed convs, matmul convs): same params, output."""
  x = jax.random.uniform(jax.random.key(0), (1, 128, 128, 3), minval=-1, maxval=1)
  outs = []
  for impl in ('xla', 'cpu'):
    net = unet.UnetGenerator(7, ngf=4, conv_impl=impl)
    variables = net.init(jax.random.key(1), x)
    y, _ = net.apply(variables, x, use_running_average=False, mutable=['batch_stats'])
    outs.append((variables, y))
  for a, b in zip(jax.tree.leaves(outs[0][0]), jax.tree.leaves(outs[1][0])):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(outs[0][1], outs[1][1], atol=1e-5)
