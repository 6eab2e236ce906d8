"""The generator's optional layers: resize-conv and blur up/downsampling, the curve and
colour_skip heads.

The paper's layout stays the default and unchanged; each switch gets its shapes, its
parameter tree and the property it is there for (no checkerboard, shift robustness).
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import default
from cyclegan_jax.cli import config_checks
from cyclegan_jax.data import channels
from cyclegan_jax.deploy import inference
from cyclegan_jax.deploy import tiling
from cyclegan_jax.nets import cpu_forms
from cyclegan_jax.nets import models
from cyclegan_jax.nets import spec

NGF = 4


def init(module, size=16, key=0):
  return jax.jit(module.init)(jax.random.key(key), jnp.zeros((1, size, size, 3)))[
    'params'
  ]


def shapes(tree):
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {'/'.join(p.key for p in path): tuple(v.shape) for path, v in flat}


# The paper's generator (ngf 4, 2 blocks) as it was before the switches existed.
PAPER_TREE = {
  'stem/kernel': (7, 7, 3, 4),
  'stem/bias': (4,),
  'down_0/kernel': (3, 3, 4, 8),
  'down_0/bias': (8,),
  'down_1/kernel': (3, 3, 8, 16),
  'down_1/bias': (16,),
  **{
    f'block_{i}/conv_{j}/{p}': s
    for i in range(2)
    for j in range(2)
    for p, s in (('kernel', (3, 3, 16, 16)), ('bias', (16,)))
  },
  'up_0/conv/kernel': (3, 3, 8, 16),
  'up_0/conv/bias': (8,),
  'up_1/conv/kernel': (3, 3, 4, 8),
  'up_1/conv/bias': (4,),
  'head/kernel': (7, 7, 4, 3),
  'head/bias': (3,),
}


def test_default_config_builds_the_papers_generator_unchanged():
  model = default.get_config().model
  assert (model.upsample, model.downsample) == ('transpose', 'stride')
  built = models.generator_from_config(model)
  assert (built.upsample, built.downsample) == ('transpose', 'stride')
  assert built.conv_impl == spec.resolve_conv_impl('auto', jax.default_backend())
  paper = models.ResnetGenerator(ngf=NGF, num_blocks=2)
  params = init(paper)
  assert shapes(params) == PAPER_TREE
  configured = built.clone(ngf=NGF, num_blocks=2, conv_impl='xla')
  same = init(configured)
  jax.tree.map(np.testing.assert_array_equal, params, same)
  x = jax.random.uniform(jax.random.key(1), (1, 16, 16, 3), minval=-1, maxval=1)
  np.testing.assert_array_equal(
    paper.apply({'params': params}, x), configured.apply({'params': same}, x)
  )


def test_saved_configs_without_the_fields_mean_the_papers_layout():
  old = {'netG': 'resnet_6blocks', 'ngf': 4, 'dtype': 'float32'}
  assert spec.generator_layout(old) == {
    'upsample': 'transpose',
    'downsample': 'stride',
    'head': 'tanh',
  }
  with pytest.raises(ValueError, match='model.upsample'):
    spec.generator_layout({**old, 'upsample': 'bilinear'})


@pytest.mark.parametrize(
  'upsample,up_kernels',
  [
    ('resize_conv', {'up_0': (3, 3, 16, 8), 'up_1': (3, 3, 8, 4)}),
  ],
)
def test_upsample_modes_shapes_and_parameter_tree(upsample, up_kernels):
  module = models.ResnetGenerator(ngf=NGF, num_blocks=2, upsample=upsample)
  params = init(module)
  want = dict(PAPER_TREE)
  for name, kernel in up_kernels.items():
    want[f'{name}/conv/kernel'] = kernel
    want[f'{name}/conv/bias'] = (kernel[-1],)
  assert shapes(params) == want
  for shape in ((2, 20, 28, 3), (1, 13, 9, 3)):  # Odd sizes are padded, cropped back.
    out = jax.eval_shape(module.apply, {'params': params}, jnp.zeros(shape))
    assert out.shape == shape


def test_no_checkerboard_at_init_on_a_constant_input():
  # The transposed conv's overlap pattern differs between even and odd output pixels,
  # so a constant input comes out as a 2×2-periodic grid; the new layers' cannot.
  x = jnp.full((1, 8, 8, 6), 0.7)
  for layer in (
    models.ConvTransposeUp(4),
    models.upsample_layer('resize_conv', 4, jnp.float32, cpu_forms.PLAIN, 'up'),
  ):
    params = layer.init(jax.random.key(4), x)['params']
    y = np.asarray(layer.apply({'params': params}, x))[
      0, 2:-2, 2:-2
    ]  # Away from borders.
    spread = float(np.ptp(y, axis=(0, 1)).max())
    if isinstance(layer, models.ConvTransposeUp):
      assert spread > 1e-3  # The artefact the switch removes.
    else:
      assert spread < 1e-6, spread


def test_blur_downsample_is_robust_to_a_one_pixel_shift():
  # Columns alternating +1 / -1: plain stride-2 subsampling keeps one phase, so a
  # one-pixel shift flips the sign of the whole output; the blur removes the frequency.
  x = jnp.tile(jnp.array([1.0, -1.0]), 8)[None, None, :, None] * jnp.ones((1, 8, 1, 2))
  shifted = jnp.roll(x, 1, axis=2)
  strided = lambda v: v[:, ::2, ::2]
  assert float(jnp.abs(strided(x) - strided(shifted)).max()) == 2.0
  blurred, blurred_shift = models.blur_downsample(x), models.blur_downsample(shifted)
  assert blurred.shape == (1, 4, 8, 2)
  interior = lambda v: v[:, :, 1:-1]  # The reflect-padded border sees other neighbours.
  np.testing.assert_allclose(interior(blurred), 0.0, atol=1e-7)
  np.testing.assert_allclose(interior(blurred_shift), 0.0, atol=1e-7)
  # A smooth ramp passes: the blur is a low-pass, normalised to 1.
  ramp = jnp.arange(16.0)[None, None, :, None] * jnp.ones((1, 4, 1, 1))
  np.testing.assert_allclose(
    models.blur_downsample(ramp)[0, 0, 1:, 0], ramp[0, 0, 2::2, 0]
  )


def test_blur_downsample_keeps_the_parameter_tree_and_shapes():
  module = models.ResnetGenerator(ngf=NGF, num_blocks=2, downsample='blur')
  params = init(module)
  assert shapes(params) == PAPER_TREE
  x = jax.random.uniform(jax.random.key(5), (1, 12, 20, 3), minval=-1, maxval=1)
  y = module.apply({'params': params}, x)
  assert y.shape == x.shape
  paper = models.ResnetGenerator(ngf=NGF, num_blocks=2).apply({'params': params}, x)
  assert float(jnp.abs(y - paper).max()) > 1e-4  # Same weights, another network.


@pytest.mark.parametrize('upsample', spec.UPSAMPLE_MODES)
def test_inference_reads_the_layout_from_the_parameters(upsample):
  module = models.ResnetGenerator(ngf=NGF, num_blocks=6, upsample=upsample)
  params = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
  assert inference.upsample_of(params['params']) == upsample
  paper = ml_collections.ConfigDict({'netG': 'resnet_6blocks', 'ngf': NGF})
  check = lambda config: inference.check_generator_fits(
    models.generator_from_config(
      ml_collections.ConfigDict({**config, 'dtype': 'float32'})
    ),
    params['params'],
    name='G_A',
    model_config=config,
    where='here',
  )
  check(ml_collections.ConfigDict({**paper, 'upsample': upsample}))
  if upsample != 'transpose':  # A config saved without the field: the paper's layout.
    with pytest.raises(
      inference.ArchitectureMismatchError, match=f"upsample='{upsample}'"
    ):
      check(paper)


@pytest.mark.slow  # The CPU fast forms compile for tens of seconds.
@pytest.mark.parametrize(
  'upsample,downsample', [('resize_conv', 'blur'), ('transpose', 'stride')]
)
def test_cpu_forms_compute_the_same_network_in_every_layout(upsample, downsample):
  module = models.ResnetGenerator(
    ngf=NGF, num_blocks=1, upsample=upsample, downsample=downsample
  )
  plain, fast = module.clone(conv_impl='xla'), module.clone(conv_impl='cpu')
  params = init(plain)
  assert shapes(init(fast)) == shapes(params)
  x = jax.random.uniform(jax.random.key(6), (1, 20, 24, 3), minval=-1, maxval=1)
  np.testing.assert_allclose(
    fast.apply({'params': params}, x), plain.apply({'params': params}, x), atol=1e-5
  )


@pytest.mark.parametrize('conv_impl', ['xla', 'cpu'])
def test_curve_head_starts_as_the_identity(conv_impl):
  generator = models.ResnetGenerator(
    ngf=NGF, num_blocks=2, head='curve', conv_impl=conv_impl
  )
  params = init(generator, size=18)
  # The paper's parameters plus the colour map's; the head's kernel starts at zero.
  assert {k: v for k, v in shapes(params).items() if not k.startswith('curve/')} == (
    PAPER_TREE
  )
  assert not np.any(params['head']['kernel'])
  # 18 px is not a multiple of 4: the input is padded inside, the output cropped back.
  x = jax.random.uniform(jax.random.key(1), (2, 18, 18, 3), minval=-1, maxval=1)
  np.testing.assert_array_equal(generator.apply({'params': params}, x), x)


def test_curve_head_adds_the_last_conv_to_the_input_and_clips():
  generator = models.ResnetGenerator(ngf=NGF, num_blocks=2, head='curve')
  params = init(generator)
  params['head']['bias'] = jnp.array([0.5, 0.0, -0.5])
  x = jax.random.uniform(jax.random.key(2), (1, 16, 16, 3), minval=-1, maxval=1)
  want = np.clip(np.asarray(x) + np.array([0.5, 0.0, -0.5]), -1, 1)
  np.testing.assert_allclose(generator.apply({'params': params}, x), want, atol=1e-6)


def test_curve_head_can_move_a_saturated_pixel():
  """A white pixel gets a gradient toward black: the head adds in image space."""
  generator = models.ResnetGenerator(ngf=NGF, num_blocks=2, head='curve')
  params = init(generator)
  white = jnp.ones((1, 16, 16, 3))
  loss = lambda p: jnp.mean((generator.apply({'params': p}, white) + 1.0) ** 2)
  grad = jax.grad(loss)(params)['head']['bias']
  assert np.all(np.asarray(grad) > 0.5)  # d/d(bias) of the mean: 2·(1 + 1)·½ at the clip.


@pytest.mark.parametrize('channels_in,channels_out', [(1, 3), (3, 1)])
def test_curve_head_across_channel_counts_starts_from_the_converted_input(
  channels_in, channels_out
):
  generator = models.ResnetGenerator(
    ngf=NGF, num_blocks=2, head='curve', output_channels=channels_out
  )
  x = jax.random.uniform(jax.random.key(3), (1, 16, 16, channels_in), minval=-1, maxval=1)
  params = jax.jit(generator.init)(jax.random.key(0), x)['params']
  want = channels.to_channels(np.asarray(x), channels_out)
  out = generator.apply({'params': params}, x)
  np.testing.assert_allclose(out, want, atol=1e-6)


@pytest.mark.parametrize('conv_impl', ['xla', 'cpu'])
def test_colour_skip_head_starts_as_the_papers_generator(conv_impl):
  generator = models.ResnetGenerator(
    ngf=NGF, num_blocks=2, head='colour_skip', conv_impl=conv_impl
  )
  paper = models.ResnetGenerator(ngf=NGF, num_blocks=2, conv_impl=conv_impl)
  params = init(generator, size=18)
  assert {k: v for k, v in shapes(params).items() if not k.startswith('curve/')} == (
    PAPER_TREE
  )
  assert np.any(params['head']['kernel'])  # The paper's random init, not zeros.
  x = jax.random.uniform(jax.random.key(1), (2, 18, 18, 3), minval=-1, maxval=1)
  without_curve = {k: v for k, v in params.items() if k != 'curve'}
  np.testing.assert_allclose(
    generator.apply({'params': params}, x),
    paper.apply({'params': without_curve}, x),
    atol=1e-6,
  )


def test_colour_skip_head_adds_the_input_colour_map_before_the_tanh():
  """With a trained colour map the output follows the input's absolute colour, which
  the paper's generator (instance norms throughout) cannot see."""
  generator = models.ResnetGenerator(ngf=NGF, num_blocks=2, head='colour_skip')
  params = init(generator)
  params['curve']['out']['kernel'] = jnp.eye(models.CURVE_FEATURES, 3)[None, None] * 0.5
  x = jax.random.uniform(jax.random.key(2), (1, 16, 16, 3), minval=-0.5, maxval=0.5)
  curve = models.PixelCurve(3).apply({'params': params['curve']}, x)
  raw = jnp.arctanh(
    models.ResnetGenerator(ngf=NGF, num_blocks=2).apply(
      {'params': {k: v for k, v in params.items() if k != 'curve'}}, x
    )
  )
  out = generator.apply({'params': params}, x)
  np.testing.assert_allclose(out, jnp.tanh(raw + curve), atol=1e-4)
  assert float(jnp.abs(curve).max()) > 0.1
  # A global colour shift moves the output: the paper's generator barely moves.
  shifted = generator.apply({'params': params}, x + 0.4)
  paper = models.ResnetGenerator(ngf=NGF, num_blocks=2)
  paper_params = {k: v for k, v in params.items() if k != 'curve'}
  paper_move = paper.apply({'params': paper_params}, x + 0.4) - paper.apply(
    {'params': paper_params}, x
  )
  assert float(jnp.abs(shifted - out).mean()) > 10 * float(jnp.abs(paper_move).mean())


@pytest.mark.parametrize('channels_in,channels_out', [(1, 3), (3, 1)])
def test_colour_skip_head_across_channel_counts(channels_in, channels_out):
  generator = models.ResnetGenerator(
    ngf=NGF, num_blocks=2, head='colour_skip', output_channels=channels_out
  )
  x = jax.random.uniform(jax.random.key(3), (1, 16, 16, channels_in), minval=-1, maxval=1)
  params = jax.jit(generator.init)(jax.random.key(0), x)['params']
  assert params['curve']['out']['kernel'].shape[-1] == channels_out
  assert generator.apply({'params': params}, x).shape == (1, 16, 16, channels_out)


def test_curve_head_is_checked_and_kept_by_the_layout():
  model = ml_collections.ConfigDict(
    {'netG': 'resnet_6blocks', 'ngf': 4, 'dtype': 'float32', 'head': 'curve'}
  )
  assert models.generator_from_config(model).head == 'curve'
  with pytest.raises(ValueError, match='model.head'):
    spec.generator_layout({**model.to_dict(), 'head': 'skip'})


def _refused_in_one_line(fn, pattern):
  with pytest.raises(ValueError, match=pattern) as e:
    fn()
  assert '\n' not in str(e.value)


@pytest.mark.parametrize('field', list(spec.LAYOUT_MODES))
def test_an_unknown_mode_is_refused_in_one_line_by_every_consumer(field):
  paper = models.ResnetGenerator(ngf=NGF, num_blocks=1)
  params = init(paper)
  bad = paper.clone(**{field: 'bogus'})
  want = f"model.{field} must be one of .*, got 'bogus'"
  x = jnp.zeros((1, 16, 16, 3))
  _refused_in_one_line(lambda: bad.init(jax.random.key(0), x), want)
  _refused_in_one_line(lambda: bad.apply({'params': params}, x), want)
  _refused_in_one_line(lambda: tiling.plan_for(bad, params), want)
  _refused_in_one_line(lambda: spec.generator_layout({field: 'bogus'}), want)
  config = default.get_config()
  config.model[field] = 'bogus'
  _refused_in_one_line(lambda: models.generator_from_config(config.model), want)
  _refused_in_one_line(
    lambda: config_checks.validate(config), f"config.model.{field}='bogus': must be"
  )
  pytest.importorskip('onnx')
  from cyclegan_jax.deploy import onnx_graph  # pylint: disable=g-import-not-at-top

  _refused_in_one_line(
    lambda: onnx_graph.generator_graph(
      params, input_name='x', output_name='y', **{field: 'bogus'}
    ),
    want,
  )


def _critic(model):
  return models.discriminator_from_config(model).init(
    jax.random.key(0), jnp.zeros((1, 32, 32, 3))
  )


@pytest.mark.parametrize(
  'field, build',
  [
    ('netG', models.generator_from_config),
    ('conv_impl', models.generator_from_config),
    ('netD', _critic),
    ('norm_D', _critic),
    ('conv_impl', _critic),
  ],
)
def test_unknown_network_names_and_conv_impls_are_refused_in_one_line(field, build):
  bad = ml_collections.ConfigDict(
    {**default.get_config().model.to_dict(), field: 'bogus'}
  )
  _refused_in_one_line(lambda: build(bad), f"model.{field} must be one of .*'bogus'")
