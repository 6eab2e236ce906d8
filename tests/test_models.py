"""Tests of cyclegan_jax.nets.models: sizes, any-size inputs, bfloat16 and init.

Equality with PyTorch itself is in test_torch_weights.py; here the generator is also checked
against a plain `lax` re-statement written independently of Flax's modules.
"""

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from cyclegan_jax.nets import models


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def init_shapes(module, size=(64, 64)):
  return jax.eval_shape(
    module.init, jax.random.key(0), jnp.zeros((1, *size, 3), jnp.float32)
  )


@pytest.mark.parametrize(
  'module,want',
  [
    (models.ResnetGenerator(ngf=64, num_blocks=9), 11_378_179),
    (models.ResnetGenerator(ngf=64, num_blocks=6), 7_837_699),
    (models.PatchDiscriminator(ndf=64, num_layers=3), 2_764_737),
  ],
)
def test_parameter_counts_equal_the_reference(module, want):
  assert count(init_shapes(module)) == want


# An independent re-statement of the reference generator (PyTorch semantics in lax).


def _conv(x, p, stride=1, pad=0):
  y = lax.conv_general_dilated(
    x,
    p['kernel'],
    (stride, stride),
    ((pad, pad), (pad, pad)),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    precision=lax.Precision.HIGHEST,
  )
  return y + p['bias']


def _conv_transpose(x, p):
  # torch ConvTranspose2d(k3, s2, p1, output_padding 1): dilate the input by 2, pad it by
  # (1, 2) and correlate with the spatially flipped kernel, channels (in, out).
  kernel = jnp.flip(p['kernel'], (0, 1)).transpose(0, 1, 3, 2)
  y = lax.conv_general_dilated(
    x,
    kernel,
    (1, 1),
    ((1, 2), (1, 2)),
    lhs_dilation=(2, 2),
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    precision=lax.Precision.HIGHEST,
  )
  return y + p['bias']


def _inorm(x):
  mean = x.mean((1, 2), keepdims=True)
  var = ((x - mean) ** 2).mean((1, 2), keepdims=True)
  return (x - mean) / jnp.sqrt(var + 1e-5)


def _reflect(x, pad):
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')


def reference_generator(params, x, num_blocks):
  y = jax.nn.relu(_inorm(_conv(_reflect(x, 3), params['stem'])))
  y = jax.nn.relu(_inorm(_conv(y, params['down_0'], 2, 1)))
  y = jax.nn.relu(_inorm(_conv(y, params['down_1'], 2, 1)))
  for i in range(num_blocks):
    b = params[f'block_{i}']
    z = jax.nn.relu(_inorm(_conv(_reflect(y, 1), b['conv_0'])))
    y = y + _inorm(_conv(_reflect(z, 1), b['conv_1']))
  y = jax.nn.relu(_inorm(_conv_transpose(y, params['up_0']['conv'])))
  y = jax.nn.relu(_inorm(_conv_transpose(y, params['up_1']['conv'])))
  return jnp.tanh(_conv(_reflect(y, 3), params['head']))


def random_params(tree, seed):
  """Random weights and biases (init biases are zero, which would hide a dropped bias)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda leaf: jnp.asarray(0.1 * rng.standard_normal(leaf.shape, np.float32)), tree
  )


def compute_forms(module):
  """Each compute form the module offers (plain layers, and the exact rewrites if any)."""
  if 'conv_impl' in getattr(module, '__dataclass_fields__', {}):
    return [module.clone(conv_impl='xla'), module.clone(conv_impl='cpu')]
  return [module]


@pytest.fixture(scope='module', name='tiny')
def fixture_tiny():
  module = models.ResnetGenerator(ngf=4, num_blocks=2)
  return module, random_params(init_shapes(module, (16, 16))['params'], 1)


def test_generator_matches_lax_restatement_at_multiples_of_4(tiny):
  module, params = tiny
  x = jax.random.uniform(jax.random.key(2), (2, 72, 88, 3), minval=-1, maxval=1)
  want = jax.jit(reference_generator, static_argnums=2)(params, x, 2)
  for form in compute_forms(module):
    got = jax.jit(form.apply)({'params': params}, x)
    assert got.shape == (2, 72, 88, 3) and got.dtype == jnp.float32
    # Multiples of 4 go through untouched: no padding, no crop.
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_generator_keeps_any_size(tiny):
  module, params = tiny
  x = jax.random.uniform(jax.random.key(3), (1, 73, 91, 3), minval=-1, maxval=1)
  padded = jnp.pad(x, ((0, 0), (0, 3), (0, 1), (0, 0)), mode='reflect')
  want = jax.jit(reference_generator, static_argnums=2)(params, padded, 2)[:, :73, :91]
  for form in compute_forms(module):
    got = jax.jit(form.apply)({'params': params}, x)
    # The reference returns 76×92 here; we return the input's size.
    assert got.shape == (1, 73, 91, 3)
    # It is the network run on the reflect-padded 76×92 image, cropped back.
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  for size in ((5, 7), (33, 48), (48, 33)):
    y = jax.eval_shape(module.apply, {'params': params}, jnp.zeros((1, *size, 3)))
    assert y.shape == (1, *size, 3)


def test_discriminator_output_sizes_match_the_reference():
  module = models.PatchDiscriminator(ndf=4, num_layers=3)
  variables = init_shapes(module, (73, 91))
  shape = lambda *s: jax.eval_shape(module.apply, variables, jnp.zeros(s)).shape
  # The official code gives D on 1×3×73×91 an output of 1×1×7×9.
  assert shape(2, 73, 91, 3) == (2, 7, 9, 1)
  assert shape(1, 256, 256, 3) == (1, 30, 30, 1)


@pytest.mark.slow
def test_bfloat16_compute_keeps_float32_params_and_outputs(tiny):
  module, params = tiny
  x = jax.random.uniform(jax.random.key(4), (2, 16, 24, 3), minval=-1, maxval=1)
  want = jax.jit(module.apply)({'params': params}, x)
  bf16 = module.clone(dtype=jnp.bfloat16)
  bf16_params = jax.eval_shape(bf16.init, jax.random.key(0), x)['params']
  assert {leaf.dtype for leaf in jax.tree.leaves(bf16_params)} == {jnp.dtype(jnp.float32)}
  got = jax.jit(bf16.apply)({'params': params}, x)
  assert got.dtype == jnp.float32 and got.shape == want.shape
  err = jnp.abs(got - want)
  assert float(err.max()) < 0.15 and float(err.mean()) < 0.02, (err.max(), err.mean())

  critic = models.PatchDiscriminator(ndf=8, num_layers=3)
  d_params = random_params(init_shapes(critic, (32, 32))['params'], 5)
  x = jax.random.uniform(jax.random.key(6), (2, 32, 32, 3), minval=-1, maxval=1)
  d_want = jax.jit(critic.apply)({'params': d_params}, x)
  d_got = jax.jit(critic.clone(dtype='bfloat16').apply)({'params': d_params}, x)
  assert d_got.dtype == jnp.float32
  scale = float(jnp.abs(d_want).mean())
  assert float(jnp.abs(d_got - d_want).mean()) < 0.05 * scale


@pytest.mark.parametrize(
  'module',
  [
    models.ResnetGenerator(ngf=16, num_blocks=9),
    models.PatchDiscriminator(ndf=32, num_layers=3),
  ],
)
def test_init_is_normal_002_with_zero_biases(module):
  # The rbg PRNG compiles in seconds where threefry takes ~20 s on CPU; the init
  # distribution does not depend on the generator of random bits.
  key = jax.random.key(0, impl='rbg')
  params = jax.jit(module.init)(key, jnp.zeros((1, 16, 16, 3)))['params']
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  kernels = [np.asarray(v) for p, v in flat if p[-1].key == 'kernel']
  biases = [np.asarray(v) for p, v in flat if p[-1].key == 'bias']
  assert len(kernels) == len(biases) > 0
  assert all(not b.any() for b in biases)
  pooled = np.concatenate([k.ravel() for k in kernels])
  assert abs(pooled.std() - 0.02) < 0.0005 and abs(pooled.mean()) < 0.0005
  for k in kernels:
    if k.size > 10_000:  # Big enough for a tight per-layer estimate.
      assert abs(k.std() - 0.02) < 0.002, k.shape
