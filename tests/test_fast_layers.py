"""The exact rewrites of `cyclegan_jax.nets.cpu_forms` against the plain layers they replace."""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from cyclegan_jax.methods import cycle_gan
from cyclegan_jax.nets import cpu_forms
from cyclegan_jax.nets import models
from cyclegan_jax.nets import spec

RTOL, ATOL = 1e-5, 1e-4


def _plain_conv_transpose(x, kernel, bias):
  """What `models.ConvTransposeUp` computes in its plain form."""
  return (
    jax.lax.conv_transpose(x, kernel, (2, 2), ((1, 2), (1, 2)), transpose_kernel=True)
    + bias
  )


def _plain_conv(x, kernel):
  return jax.lax.conv_general_dilated(
    x, kernel, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )


def _normal(rng: np.random.Generator, *shape: int) -> jax.Array:
  # NumPy draws: no JAX RNG programs to compile, which is most of a small test's time.
  return jnp.asarray(rng.standard_normal(shape, np.float32))


def _output_and_grads(fn, args, seed=7):
  """fn(*args) and the gradients of ⟨fn(*args), random cotangent⟩ w.r.t. every arg.

  Jitted, as the models use the layers, and because op-by-op dispatch of the small
  kernel-shuffling ops would dominate the test's time.
  """

  @jax.jit
  def run(*args):
    y, vjp = jax.vjp(fn, *args)
    cotangent = jax.random.normal(jax.random.key(seed), y.shape, y.dtype)
    return y, vjp(cotangent)

  return run(*args)


def _assert_trees_close(actual, expected, rtol=RTOL, atol=ATOL):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    assert a.shape == e.shape and a.dtype == e.dtype
    np.testing.assert_allclose(
      np.asarray(a, np.float32), np.asarray(e, np.float32), rtol=rtol, atol=atol
    )


@pytest.mark.parametrize(
  'batch,height,width,cin,cout', [(1, 4, 4, 1, 1), (2, 5, 7, 3, 5), (3, 6, 3, 16, 8)]
)
def test_subpixel_conv_transpose_matches_conv_transpose(batch, height, width, cin, cout):
  rng = np.random.default_rng(batch * 100 + cin)
  args = (
    _normal(rng, batch, height, width, cin),
    0.3 * _normal(rng, 3, 3, cout, cin),
    _normal(rng, cout),
  )
  expected = _output_and_grads(_plain_conv_transpose, args)
  actual = _output_and_grads(cpu_forms.subpixel_conv_transpose, args)
  assert actual[0].shape == (batch, 2 * height, 2 * width, cout)
  _assert_trees_close(actual, expected)


def test_subpixel_kernel_places_each_tap_once():
  """Every tap of the 3×3 kernel feeds exactly one (phase, offset) slot; 7 slots are 0."""
  kernel = jnp.arange(1, 10, dtype=jnp.float32).reshape(3, 3, 1, 1)
  sub = cpu_forms.subpixel_kernel(kernel)  # (2, 2, 1, 4)
  assert sub.shape == (2, 2, 1, 4)
  values = np.asarray(sub).ravel()
  assert sorted(values[values != 0].tolist()) == list(range(1, 10))
  assert np.count_nonzero(values == 0) == 16 - 9


@pytest.mark.parametrize(
  'fast_conv,batch,height,width,cin,cout,size',
  [
    ('shifted_matmul_conv', 2, 15, 11, 5, 3, 7),
    ('shifted_matmul_conv', 3, 9, 10, 7, 1, 3),
    ('shifted_matmul_conv', 1, 8, 12, 6, 2, 1),
    ('matmul_conv', 1, 6, 6, 4, 4, 3),
    ('matmul_conv', 2, 9, 7, 5, 3, 3),
    ('matmul_conv', 3, 6, 8, 3, 6, 2),
    ('matmul_conv', 1, 7, 9, 2, 1, 4),
    ('im2col_conv', 2, 15, 11, 3, 4, 7),
    ('im2col_conv', 1, 9, 7, 5, 3, 3),
    ('im2col_conv', 3, 6, 8, 3, 6, 2),
    ('im2col_conv', 1, 7, 9, 2, 1, 4),
  ],
)
def test_stride1_fast_convs_match_conv(fast_conv, batch, height, width, cin, cout, size):
  """The VALID stride-1 forms with a custom VJP: output, input and kernel gradients."""
  rng = np.random.default_rng(height * width + cin + cout)
  args = (
    _normal(rng, batch, height, width, cin),
    0.2 * _normal(rng, size, size, cin, cout),
  )
  expected = _output_and_grads(_plain_conv, args)
  actual = _output_and_grads(getattr(cpu_forms, fast_conv), args)
  assert actual[0].shape == (batch, height - size + 1, width - size + 1, cout)
  _assert_trees_close(actual, expected)


def test_shifted_matmul_conv_second_order_is_an_error_not_a_wrong_answer():
  """custom_vjp has no JVP rule: forward-mode must fail loudly rather than silently."""
  x = jnp.ones((1, 9, 9, 2))
  kernel = jnp.ones((7, 7, 2, 3))
  with pytest.raises(TypeError):
    jax.jvp(cpu_forms.shifted_matmul_conv, (x, kernel), (x, kernel))


def _plain_stride2_conv(x, kernel):
  return jax.lax.conv_general_dilated(
    x, kernel, (2, 2), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )


@pytest.mark.parametrize('form', ['stride2_conv', 'im2col_conv'])
@pytest.mark.parametrize(
  'batch,height,width,cin,cout,size',
  [(1, 10, 10, 4, 5, 3), (2, 9, 11, 3, 2, 3), (2, 12, 14, 3, 6, 4), (1, 13, 13, 2, 2, 4)],
)
def test_stride2_convs_match_conv(form, batch, height, width, cin, cout, size):
  """Even and odd kernels and inputs: the rows a stride-2 window never reads are dropped."""
  rng = np.random.default_rng(height + 10 * width + size)
  args = (
    _normal(rng, batch, height, width, cin),
    0.2 * _normal(rng, size, size, cin, cout),
  )
  expected = _output_and_grads(_plain_stride2_conv, args)
  conv = (
    cpu_forms.stride2_conv
    if form == 'stride2_conv'
    else lambda x, k: cpu_forms.im2col_conv(x, k, 2)
  )
  actual = _output_and_grads(conv, args)
  assert actual[0].shape == expected[0].shape
  _assert_trees_close(actual, expected)


@pytest.mark.parametrize('form', ['matmul_conv', 'im2col_conv'])
def test_subpixel_conv_transpose_as_matmuls_matches_conv_transpose(form):
  rng = np.random.default_rng(11)
  args = (_normal(rng, 2, 5, 6, 4), 0.3 * _normal(rng, 3, 3, 3, 4), _normal(rng, 3))
  expected = _output_and_grads(_plain_conv_transpose, args)
  conv = getattr(cpu_forms, form)
  actual = _output_and_grads(
    lambda *a: cpu_forms.subpixel_conv_transpose(*a, conv=lambda x, k: conv(x, k)), args
  )
  _assert_trees_close(actual, expected)


def test_matmul_conv_bfloat16_kernel_gradient_is_float32_and_accurate():
  """bfloat16 products, float32 accumulation: the kernel's gradient keeps its dtype."""
  rng = np.random.default_rng(3)
  x, kernel = _normal(rng, 2, 10, 10, 16), 0.1 * _normal(rng, 3, 3, 16, 8)
  cotangent = _normal(rng, 2, 8, 8, 8)

  def output_and_grads(dtype):
    y, vjp = jax.vjp(lambda x, k: cpu_forms.matmul_conv(x, k, dtype), x, kernel)
    return y, vjp(cotangent.astype(y.dtype))

  y32, (dx32, dk32) = jax.jit(output_and_grads, static_argnums=0)(jnp.float32)
  y16, (dx16, dk16) = jax.jit(output_and_grads, static_argnums=0)(jnp.bfloat16)
  assert y16.dtype == jnp.bfloat16 and dx16.dtype == jnp.float32
  assert dk16.dtype == jnp.float32
  for got, want in ((y16, y32), (dx16, dx32), (dk16, dk32)):
    got = np.asarray(got, np.float32)
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 0.02


@pytest.mark.parametrize('tile', [2, 4])
@pytest.mark.parametrize(
  'batch,height,width,cin,cout',
  [(1, 6, 6, 2, 2), (2, 9, 11, 3, 4), (3, 10, 7, 5, 3), (1, 34, 34, 8, 8)],
)
def test_winograd_conv3x3_matches_conv(tile, batch, height, width, cin, cout):
  """Both tile sizes; output sizes the tile does and does not divide (those are cropped
  from a padded tiling), batches."""
  rng = np.random.default_rng(height * 7 + width)
  args = (_normal(rng, batch, height, width, cin), 0.3 * _normal(rng, 3, 3, cin, cout))
  expected = _output_and_grads(_plain_conv, args)
  actual = _output_and_grads(
    functools.partial(cpu_forms.winograd_conv3x3, tile=tile), args
  )
  assert actual[0].shape == (batch, height - 2, width - 2, cout)
  # F(4×4)'s transforms have constants up to 8 and 1/24: ~10× F(2×2)'s rounding.
  _assert_trees_close(actual, expected, *((RTOL, ATOL) if tile == 2 else (1e-4, 1e-3)))


def test_winograd_tile_follows_output_size():
  assert cpu_forms.winograd_tile_for(32, 32) == 2  # The 128² generator's blocks.
  assert cpu_forms.winograd_tile_for(64, 64) == 4  # 256².
  assert cpu_forms.winograd_tile_for(64, 39) == 2
  with pytest.raises(ValueError, match='tile must be one of'):
    cpu_forms.winograd_conv3x3(jnp.zeros((1, 6, 6, 1)), jnp.zeros((3, 3, 1, 1)), tile=3)


@pytest.mark.parametrize('tile', [2, 4])
def test_winograd_tile_matrices_give_exact_convolution(tile):
  """Aᵀ[(G g) ⊙ (Bᵀ d)] is the m-output correlation of any d with any g, in exact
  arithmetic (float64 here): the constants themselves are right."""
  t = cpu_forms.WINOGRAD_TILES[tile]
  rng = np.random.default_rng(tile)
  d, g = rng.standard_normal(t.size), rng.standard_normal(3)
  got = t.at.astype(np.float64) @ (
    (t.g.astype(np.float64) @ g) * (t.bt.astype(np.float64) @ d)
  )
  want = np.array([d[i : i + 3] @ g for i in range(t.m)])
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_conv_form_winograd_only_for_float32_3x3_stride_1():
  assert cpu_forms.conv_form(cpu_forms.ALL, jnp.float32, 3, 1) is not None
  assert cpu_forms.conv_form(cpu_forms.PLAIN, jnp.float32, 3, 1) is None
  plain_3x3 = dataclasses.replace(cpu_forms.ALL, winograd=False, matmul_convs=False)
  assert cpu_forms.conv_form(plain_3x3, jnp.float32, 3, 1) is None


def test_conv_form_matmul_forms_per_dtype():
  no_matmul = dataclasses.replace(cpu_forms.ALL, matmul_convs=False)
  for dtype in (jnp.float32, jnp.bfloat16):
    for kernel, stride in ((4, 2), (3, 2), (4, 1), (7, 1), (2, 1)):
      assert cpu_forms.conv_form(cpu_forms.ALL, dtype, kernel, stride) is not None
      assert cpu_forms.conv_form(no_matmul, dtype, kernel, stride) is None
  assert cpu_forms.conv_form(cpu_forms.ALL, jnp.bfloat16, 3, 1) is not None
  assert cpu_forms.conv_form(no_matmul, jnp.bfloat16, 3, 1) is None


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
@pytest.mark.parametrize(
  'kernel_size,stride', [(3, 1), (3, 2), (4, 2), (4, 1), (7, 1), (2, 1)]
)
def test_conv_form_matches_conv(dtype, kernel_size, stride):
  """Whatever form `conv_form` picks computes the conv and its gradients (float32 to
  ~1e-6; bfloat16 against the float32 conv of the same bfloat16-rounded inputs)."""
  rng = np.random.default_rng(kernel_size * 10 + stride)
  cin, cout = (3, 8) if kernel_size == 7 else (6, 5)
  x = _normal(rng, 2, 13, 11, cin).astype(dtype).astype(np.float32)
  kernel = 0.3 * _normal(rng, kernel_size, kernel_size, cin, cout)
  form = cpu_forms.conv_form(cpu_forms.ALL, dtype, kernel_size, stride)

  def plain(x, kernel):
    return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )

  expected = _output_and_grads(plain, (x, kernel))
  actual = _output_and_grads(lambda x, k: form(x, k).astype(jnp.float32), (x, kernel))
  if dtype == 'float32':
    _assert_trees_close(actual, expected)
  else:
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
      np.testing.assert_allclose(a, e, rtol=0.05, atol=0.05 * float(np.max(np.abs(e))))


def test_forms_of_each_conv_impl():
  assert cpu_forms.forms_for('cpu', jnp.float32) == cpu_forms.ALL
  assert cpu_forms.forms_for('cpu', 'bfloat16') == cpu_forms.ALL
  assert cpu_forms.forms_for('xla', jnp.bfloat16) == cpu_forms.PLAIN
  # 'gpu': what was measured to win on GPUs, per dtype.
  gpu32 = cpu_forms.forms_for('gpu', jnp.float32)
  assert gpu32.subpixel and gpu32.head and not gpu32.winograd
  gpu16 = cpu_forms.forms_for('gpu', jnp.bfloat16)
  assert gpu16.subpixel and not (gpu16.head or gpu16.matmul_convs)
  # A network only ever sees a resolved impl: 'auto' is refused, as is an unknown one.
  for bad in ('auto', 'on'):
    with pytest.raises(ValueError, match='model.conv_impl') as e:
      cpu_forms.forms_for(bad, jnp.float32)
    assert '\n' not in str(e.value)


def test_auto_conv_impl_resolves_by_backend():
  assert spec.resolve_conv_impl('auto', 'cpu') == 'cpu'
  assert spec.resolve_conv_impl('auto', 'gpu') == 'gpu'
  assert spec.resolve_conv_impl('auto', 'tpu') == 'xla'
  assert spec.resolve_conv_impl('xla', 'cpu') == 'xla'
  assert spec.resolve_conv_impl('cpu', 'tpu') == 'cpu'
  with pytest.raises(ValueError, match="model.conv_impl must be one of 'auto'"):
    spec.resolve_conv_impl('on', 'cpu')


def test_networks_resolve_the_config_conv_impl_when_built():
  model = tiny.get_config().model
  model.conv_impl = 'auto'
  for backend, impl in (('cpu', 'cpu'), ('gpu', 'gpu'), ('tpu', 'xla')):
    assert models.generator_from_config(model, backend=backend).conv_impl == impl
    assert {
      g.conv_impl for g in cycle_gan.generators_from_config(model, backend).values()
    } == {impl}
    assert models.discriminator_from_config(model, backend).conv_impl == impl
  default = spec.resolve_conv_impl('auto', jax.default_backend())
  assert models.generator_from_config(model).conv_impl == default
  model.conv_impl = 'xla'
  assert models.generator_from_config(model, backend='cpu').conv_impl == 'xla'
  # Configs saved before the field: 'auto'.
  old = {k: v for k, v in model.to_dict().items() if k != 'conv_impl'}
  assert models.conv_impl_from_config(old, 'cpu') == 'cpu'


@pytest.mark.slow
@pytest.mark.parametrize('backend, dtype', [('gpu', 'float32'), ('gpu', 'bfloat16')])
def test_generator_with_gpu_forms_matches_plain(backend, dtype):
  """The GPU's subset of the rewrites (mixed with plain layers) is exact too."""
  x = jax.random.uniform(jax.random.key(0), (1, 16, 20, 3), minval=-1, maxval=1)
  plain = _generator(False, dtype)
  params = _perturb(_init(plain, x))
  expected = jax.jit(plain.apply)({'params': params}, x)
  conv_impl = spec.resolve_conv_impl('auto', backend)
  actual = jax.jit(_generator(conv_impl, dtype).apply)({'params': params}, x)
  tol = 1e-4 if dtype == 'float32' else 5e-2
  np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


def _impl(fast: bool | str) -> str:
  """conv_impl: 'cpu' (every rewrite) for True, 'xla' (plain) for False, or as given."""
  return fast if isinstance(fast, str) else ('cpu' if fast else 'xla')


def _generator(fast: bool | str, dtype='float32', output_channels=3):
  # One residual block: every layer kind is there, and compiles stay short.
  return models.ResnetGenerator(
    ngf=8,
    num_blocks=1,
    output_channels=output_channels,
    dtype=dtype,
    conv_impl=_impl(fast),
  )


def _init(model: nn.Module, x: jax.Array) -> dict:
  # Jitted: op-by-op init would compile every small op of the network separately.
  return jax.jit(model.init)(jax.random.key(1), x)['params']


def _perturb(params: dict) -> dict:
  """Adds noise to every parameter, so that zero-initialised biases are exercised too."""
  rng = np.random.default_rng(5)
  return jax.tree.map(lambda p: p + 0.05 * _normal(rng, *p.shape), params)


@pytest.mark.slow
@pytest.mark.parametrize(
  'shape,tolerances',
  [
    ((2, 30, 37, 3), (RTOL, ATOL)),  # not multiples of 4: pad + crop
    # Blocks at 41×40: Winograd F(4×4, 3×3), with its ~10× larger rounding.
    ((1, 162, 160, 3), (1e-4, 1e-3)),
  ],
)
def test_generator_fast_and_plain_agree(shape, tolerances):
  x = jax.random.uniform(jax.random.key(0), shape, minval=-1, maxval=1)
  plain, fast = _generator(False), _generator(True)
  params = _init(plain, x)
  fast_params = _init(fast, x)
  # Same names, shapes and initial values: checkpoints and imported weights fit both.
  _assert_trees_close(fast_params, params, rtol=0, atol=0)
  assert params['up_0']['conv']['kernel'].shape == (3, 3, 16, 32)
  assert params['up_1']['conv']['kernel'].shape == (3, 3, 8, 16)
  assert params['head']['kernel'].shape == (7, 7, 8, 3)
  assert params['head']['bias'].shape == (3,)
  params = _perturb(params)

  def loss_and_grads(model):
    def loss(params, x):
      y = model.apply({'params': params}, x)
      return jnp.sum(y * jnp.cos(jnp.arange(y.size).reshape(y.shape))), y

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)

  (loss_p, y_p), grads_p = loss_and_grads(plain)
  (loss_f, y_f), grads_f = loss_and_grads(fast)
  assert y_f.shape == shape
  _assert_trees_close(y_f, y_p, *tolerances)
  np.testing.assert_allclose(loss_f, loss_p, *tolerances)
  _assert_trees_close(grads_f, grads_p, *tolerances)


@pytest.mark.slow
def test_generator_odd_output_channels():
  x = jax.random.uniform(jax.random.key(0), (2, 16, 20, 3), minval=-1, maxval=1)
  params = _init(_generator(False, output_channels=1), x)
  params = _perturb(params)
  y_p = jax.jit(_generator(False, output_channels=1).apply)({'params': params}, x)
  y_f = jax.jit(_generator(True, output_channels=1).apply)({'params': params}, x)
  assert y_f.shape == (2, 16, 20, 1)
  _assert_trees_close(y_f, y_p)


@pytest.mark.slow
def test_generator_bfloat16_in_both_forms():
  """bfloat16 compute (float32 params) runs in both forms, and fast is no less accurate."""
  x = jax.random.uniform(jax.random.key(0), (2, 16, 20, 3), minval=-1, maxval=1)
  params = _init(_generator(False), x)

  @jax.jit
  def output_and_grads(params, fast, dtype):
    model = _generator(fast, dtype)
    loss = lambda p: jnp.mean(jnp.abs(model.apply({'params': p}, x) - x))
    return model.apply({'params': params}, x), jax.grad(loss)(params)

  output_and_grads = jax.jit(output_and_grads.__wrapped__, static_argnums=(1, 2))

  y32, g32 = output_and_grads(params, False, 'float32')
  errors = {}
  for fast in (False, True):
    y16, g16 = output_and_grads(params, fast, 'bfloat16')
    assert y16.dtype == jnp.float32  # the output is cast back
    np.testing.assert_allclose(y16, y32, atol=0.05)  # an 8-bit mantissa: close, not equal
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(g16))
    # Kernels only: the biases ahead of InstanceNorm have a true gradient of 0, so theirs
    # is pure rounding noise in either dtype.
    errors[fast] = {
      jax.tree_util.keystr(path): float(
        jnp.linalg.norm(g - g32_leaf) / jnp.linalg.norm(g32_leaf)
      )
      for (path, g), g32_leaf in zip(
        jax.tree_util.tree_leaves_with_path(g16), jax.tree.leaves(g32)
      )
      if path[-1].key == 'kernel'
    }
  for name, plain_error in errors[False].items():
    # bfloat16 gradients through this tiny, freshly initialised net are off by ~20%
    # in the plain form already; the rewrites must not add to that.
    assert plain_error < 0.4, (name, plain_error)
    assert errors[True][name] <= 1.25 * plain_error + 0.01, (name, errors[True][name])


def test_conv_params_is_what_flax_layers_declare():
  """`ConvParams` stands in for nn.Conv / nn.ConvTranspose: same tree, same init values."""
  x = jnp.ones((1, 4, 4, 5))
  conv_t = nn.ConvTranspose(
    3,
    (3, 3),
    strides=(2, 2),
    padding=((1, 2), (1, 2)),
    transpose_kernel=True,
    kernel_init=models.conv_init,
  )
  expected = conv_t.init(jax.random.key(3), x)
  actual = models.ConvParams((3, 3, 3, 5), 3).init(jax.random.key(3))
  _assert_trees_close(actual, expected, rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize('cast_params', [False, True])
def test_generator_under_shard_map(cast_params):
  """The custom_vjp runs under shard_map whether the params stay replicated or not.

  Replicated (invariant) params meet a per-device batch: autodiff must sum the head's
  kernel gradient over devices exactly as it does for the plain conv. step.py instead
  casts params to varying first, which the rewrite must also accept.
  """
  if jax.device_count() < 2:
    pytest.skip('needs 2 devices (tests/conftest.py sets XLA_FLAGS for 4 CPU devices)')
  from jax.sharding import NamedSharding  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top

  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:2]), ('data',))
  x = jax.random.uniform(jax.random.key(0), (4, 12, 12, 3), minval=-1, maxval=1)
  params = _init(_generator(False), x)

  def step(fast):
    def fn(params, x):
      if cast_params:
        params = jax.tree.map(lambda p: jax.lax.pcast(p, 'data', to='varying'), params)
      model = _generator(fast)
      grads = jax.grad(lambda p: jnp.mean(jnp.abs(model.apply({'params': p}, x) - x)))(
        params
      )
      return jax.lax.pmean(grads, 'data')

    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P(), P('data')), out_specs=P()))

  x = jax.device_put(x, NamedSharding(mesh, P('data')))
  _assert_trees_close(step(True)(params, x), step(False)(params, x))


@pytest.mark.slow
def test_discriminator_bfloat16_fast_form_is_as_accurate_as_plain():
  """In bfloat16 the fast critic runs every conv as matmuls; against float32 it is no
  less accurate than the plain bfloat16 critic, in logits and in both gradients."""
  x = jax.random.uniform(jax.random.key(4), (2, 40, 36, 3), minval=-1, maxval=1)
  critic = models.PatchDiscriminator(ndf=8, num_layers=3)
  params = _perturb(_init(critic.clone(conv_impl='xla'), x))

  def output_and_grads(fast, dtype):
    model = critic.clone(conv_impl=_impl(fast), dtype=dtype)
    loss = lambda p, x: jnp.mean(model.apply({'params': p}, x) ** 2)
    return jax.jit(
      lambda p, x: (model.apply({'params': p}, x), jax.grad(loss, argnums=(0, 1))(p, x))
    )(params, x)

  y32, g32 = output_and_grads(False, 'float32')
  errors = {}
  for fast in (False, True):
    y16, g16 = output_and_grads(fast, 'bfloat16')
    assert y16.dtype == jnp.float32 and y16.shape == y32.shape
    errors[fast] = [
      float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))
      for a, b in zip(jax.tree.leaves((y16, g16)), jax.tree.leaves((y32, g32)))
      if a.ndim > 1
    ]  # kernels, dx and logits (biases before IN are noise)
  for plain_error, fast_error in zip(errors[False], errors[True]):
    assert plain_error < 0.2
    assert fast_error <= 1.25 * plain_error + 0.01
