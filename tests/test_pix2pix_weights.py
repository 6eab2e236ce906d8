"""The official pix2pix weights through `deploy.convert --g/--d` (no torch needed).

The fixtures (tests/data/make_pix2pix_fixtures.py) hold the official networks' outputs in
both test modes: `eval` (running statistics, no dropout) and `train` (the official
test.py default: batch statistics, dropout active, its masks recorded so that they can
be applied here through `nn.intercept_methods`).
"""

import os

from absl import flags
from absl.testing import flagsaver
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from cyclegan_jax.cli import app
from cyclegan_jax.deploy import convert
from cyclegan_jax.nets import models
from cyclegan_jax.nets import torch_weights as tw
from cyclegan_jax.nets import unet
from cyclegan_jax.train import checkpoints

DATA = os.path.join(os.path.dirname(__file__), 'data')
TOLERANCE = 1e-4


def data(name: str) -> str:
  return os.path.join(DATA, name)


def load(name: str) -> dict[str, np.ndarray]:
  with np.load(data(f'{name}.npz')) as f:
    return dict(f)


def inputs(fixture: dict[str, np.ndarray]) -> jax.Array:
  return jnp.asarray(fixture['x_u8'].astype(np.float32) / np.float32(127.5) - 1)


def assert_matches(fixture: dict[str, np.ndarray], mode: str, y: jax.Array) -> None:
  """The sampled pixels and the per-channel means of output `y` against torch's."""
  y = np.asarray(y)
  assert y.shape == tuple(fixture[f'{mode}_shape'])
  picked = y.reshape(-1, y.shape[-1])[fixture[f'{mode}_idx']]
  np.testing.assert_array_less(np.abs(picked - fixture[f'{mode}_y']).max(), TOLERANCE)
  np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), fixture[f'{mode}_mean'], atol=1e-5)


def torch_masks(fixture: dict[str, np.ndarray]):
  """An interceptor that makes each U-Net Dropout apply torch's recorded mask."""

  def intercept(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.Dropout) and context.method_name == '__call__':
      block = int(context.module.name.split('_')[1])  # 'up_{i}_dropout'.
      keep = fixture[f'train_mask_{block}']
      return jnp.where(keep, args[0] / (1 - context.module.rate), 0.0)
    return next_fun(*args, **kwargs)

  return intercept


def restore(workdir: str):
  """(params, batch_stats, config) of a converted workdir."""
  params, config, step = checkpoints.restore_params(workdir)
  assert step == 0
  stats = {}
  if checkpoints.step_has_item(workdir, 0, checkpoints.BATCH_STATS):
    stats, _, _ = checkpoints.restore_params(workdir, item=checkpoints.BATCH_STATS)
  return params, stats, config


def variables_of(params, stats, name):
  found = {'params': params[name]}
  if stats.get(name):
    found['batch_stats'] = stats[name]
  return found


def expected_stats_after(name: str, fixture: dict[str, np.ndarray], read):
  """The running statistics torch had after its train-mode pass, in our layout."""
  state_dict = tw.read_state_dict(data(f'{name}.pth'))
  for key, value in fixture.items():
    if key.startswith('after:'):
      state_dict[key[len('after:') :]] = value
  return read(state_dict)[2]


GENERATORS = [
  # (fixture, use_dropout, netG, ngf, norm, input_nc, output_nc)
  ('G_unet256_ngf2_batch', True, 'unet_256', 2, 'batch', 3, 3),
  ('G_unet128_ngf2_batch_legacy', True, 'unet_128', 2, 'batch', 1, 3),
  ('G_unet128_ngf1_instance', False, 'unet_128', 1, 'instance', 3, 3),
]


@pytest.mark.parametrize('name, use_dropout, net_g, ngf, norm, in_nc, out_nc', GENERATORS)
def test_converted_unet_matches_the_reference_in_both_modes(
  tmp_path, name, use_dropout, net_g, ngf, norm, in_nc, out_nc
):
  workdir = str(tmp_path / 'converted')
  convert.convert(workdir, g=data(f'{name}.pth'), use_dropout=use_dropout)
  params, stats, config = restore(workdir)
  model = config['model']
  assert config['method'] == 'pix2pix' and config['direction'] == 'AtoB'
  assert (model['netG'], model['ngf'], model['norm'], model['use_dropout']) == (
    net_g,
    ngf,
    norm,
    use_dropout,
  )
  assert (model['input_nc'], model['output_nc']) == (in_nc, out_nc)
  assert model['norm_D'] == norm  # The official --norm sets both networks.
  assert sorted(params) == ['G'] and sorted(stats) == (['G'] if norm == 'batch' else [])

  generator = models.generator_from_config(ml_collections.ConfigDict(model))
  assert isinstance(generator, unet.UnetGenerator)
  fixture = load(name)
  x = inputs(fixture)
  # The converted tree is the module's own, leaf for leaf.
  want = jax.eval_shape(lambda: generator.init(jax.random.key(0), x))
  got = variables_of(params, stats, 'G')
  assert jax.tree.structure(got) == jax.tree.structure(want)
  jax.tree.map(lambda a, b: np.testing.assert_equal(a.shape, b.shape), got, want)

  variables = variables_of(params, stats, 'G')
  assert_matches(fixture, 'eval', jax.jit(generator.apply)(variables, x))

  @jax.jit
  def official_default(variables, x):
    with nn.intercept_methods(torch_masks(fixture)):
      return generator.apply(
        variables,
        x,
        use_running_average=False,
        deterministic=False,
        mutable=['batch_stats'],
      )

  y, updates = official_default(variables, x)
  assert_matches(fixture, 'train', y)
  if norm == 'batch':
    # Torch's momentum update of the running statistics, unbiased variance included.
    want = expected_stats_after(name, fixture, tw.unet_from_state_dict)
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
      updates['batch_stats'],
      want,
    )


CRITICS = [
  # (critic fixture, generator fixture, netD, ndf)
  ('D_basic_ndf4_batch', 'G_unet256_ngf2_batch', 'basic', 4),
  ('D_pixel_ndf8_batch', 'G_unet128_ngf1_instance', 'pixel', 8),
]


@pytest.mark.parametrize('name, g_name, net_d, ndf', CRITICS)
def test_converted_critic_matches_the_reference_in_both_modes(
  tmp_path, name, g_name, net_d, ndf
):
  workdir = str(tmp_path / 'converted')
  params, batch_stats, config = convert.convert_pix2pix(
    workdir, g=data(f'{g_name}.pth'), d=data(f'{name}.pth')
  )
  model = config['model']
  assert (model['netD'], model['ndf'], model['norm_D']) == (net_d, ndf, 'batch')
  g_stats = ['G'] if 'batch' in g_name else []
  assert sorted(params) == ['D', 'G'] and sorted(batch_stats) == sorted(['D', *g_stats])
  params, stats, _ = restore(workdir)
  critic = models.discriminator_from_config(ml_collections.ConfigDict(model))
  fixture = load(name)
  x = inputs(fixture)
  want = jax.eval_shape(lambda: critic.init(jax.random.key(0), x))
  variables = variables_of(params, stats, 'D')
  assert jax.tree.structure(variables) == jax.tree.structure(want)
  assert_matches(fixture, 'eval', critic.apply(variables, x))
  y, updates = critic.apply(variables, x, False, mutable=['batch_stats'])
  assert_matches(fixture, 'train', y)
  want = expected_stats_after(name, fixture, tw.critic_from_state_dict)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
    updates['batch_stats'],
    want,
  )


def count(tree) -> int:
  return sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(tree))


def test_converted_parameter_counts():
  """The official formulas at these sizes: the U-Net's by ngf², the critic's by hand."""
  _, params, stats = tw.read_unet(data('G_unet256_ngf2_batch.pth'))
  generator = unet.UnetGenerator(8, 2, 3, 'batch')
  want = jax.eval_shape(
    lambda: generator.init(jax.random.key(0), jnp.zeros((1, 256, 256, 3)))
  )
  assert count(params) == count(want['params'])
  # Mean and variance of the down norms (blocks 1-6) and the up norms (blocks 1-7).
  down, up = 4 + 8 + 16 * 4, 2 + 4 + 8 + 16 * 4
  assert count(stats) == count(want['batch_stats']) == 2 * (down + up)
  state_dict = tw.read_state_dict(data('G_unet256_ngf2_batch.pth'))
  torch_params = sum(
    v.size
    for k, v in state_dict.items()
    if not k.endswith(('running_mean', 'running_var', 'num_batches_tracked'))
  )
  assert count(params) == torch_params
  spec, params, stats = tw.read_critic(data('D_basic_ndf4_batch.pth'))
  # conv_0 (biased), conv_1..3 (no bias) + norms, conv_4 (biased).
  ndf = 4
  want = (
    (6 * 16 + 1) * ndf
    + 16 * ndf * 2 * ndf
    + 16 * 2 * ndf * 4 * ndf
    + 16 * 4 * ndf * 8 * ndf
    + 2 * (2 + 4 + 8) * ndf
    + 16 * 8 * ndf
    + 1
  )
  assert spec == tw.CriticSpec('basic', 4, 3, 'batch', 6)
  assert count(params) == want


def test_direction_and_dropout_flags_through_the_cli(tmp_path):
  if 'g' not in flags.FLAGS:
    convert.define_flags()
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  workdir = str(tmp_path / 'converted')
  with flagsaver.flagsaver(
    g=data('G_unet128_ngf2_batch_legacy.pth'),
    direction='BtoA',
    use_dropout=False,
    workdir=workdir,
  ):
    outcome = convert.main(['convert'])
  assert outcome.line.startswith(
    "Wrote ['G'] (netG=unet_128, ngf=2, norm=batch, dropout=False, direction=BtoA)"
  )
  assert outcome.data['method'] == 'pix2pix'
  _, stats, config = restore(workdir)
  # G reads domain B (1 channel) and writes domain A (3 channels).
  assert (config['model']['input_nc'], config['model']['output_nc']) == (3, 1)
  assert config['direction'] == 'BtoA' and config['model']['use_dropout'] is False
  assert sorted(stats) == ['G']


def test_bad_files_give_one_line(tmp_path):
  def fails(match, **kwargs):
    with pytest.raises(tw.WeightsFileError, match=match) as e:
      convert.convert(str(tmp_path / f'w{len(os.listdir(tmp_path))}'), **kwargs)
    assert '\n' not in str(e.value)
    return str(e.value)

  # A CycleGAN critic is neither a U-Net nor a ResNet generator.
  line = fails('model.1.weight', g=data('D_basic_ndf8.pth'))
  assert line.startswith(data('D_basic_ndf8.pth'))
  fails(
    "key 'model.0.weight' is missing",
    g=data('G_unet128_ngf1_instance.pth'),
    d=data('G_unet128_ngf1_instance.pth'),
  )
  fails(
    'reads 6 channels',
    g=data('G_unet128_ngf2_batch_legacy.pth'),
    d=data('D_basic_ndf4_batch.pth'),
  )
  fails('--d needs --g', d=data('D_basic_ndf4_batch.pth'))
  fails('not both', g=data('G_unet256_ngf2_batch.pth'), g_AtoB=data('G_resnet6_ngf6.pth'))
  not_pth = tmp_path / 'not.pth'
  not_pth.write_bytes(b'\x89PNG not weights')
  fails('not a PyTorch', g=str(not_pth))
  # A ResNet generator in pix2pix is read as such (instance norm, no dropout).
  _, config = convert.convert(str(tmp_path / 'resnet'), g=data('G_resnet6_ngf6.pth'))
  assert config['model']['netG'] == 'resnet_6blocks'
  assert config['model']['use_dropout'] is False


def test_damaged_state_dicts():
  state_dict = tw.read_state_dict(data('G_unet256_ngf2_batch.pth'))
  key = 'model.model.1.model.3.model.2.running_var'
  broken = {k: v for k, v in state_dict.items() if k != key}
  with pytest.raises(tw.WeightsFileError, match=f'{key!r} is missing'):
    tw.unet_from_state_dict(broken)
  wrong = dict(state_dict, **{'model.model.3.weight': np.zeros((4, 3, 3, 3), np.float32)})
  with pytest.raises(tw.WeightsFileError, match="'model.model.3.weight' has shape"):
    tw.unet_from_state_dict(wrong)
  extra = dict(state_dict, **{'model.model.0.bias': np.zeros(2, np.float32)})
  with pytest.raises(tw.WeightsFileError, match="unexpected key 'model.model.0.bias'"):
    tw.unet_from_state_dict(extra)
  # DataParallel's prefix and old InstanceNorm buffers are accepted.
  state_dict = tw.read_state_dict(data('G_unet128_ngf1_instance.pth'))
  prefixed = {f'module.{k}': v for k, v in state_dict.items()}
  prefixed['module.model.model.1.model.2.running_mean'] = np.zeros(2, np.float32)
  spec, params, stats = tw.unet_from_state_dict(prefixed)
  assert spec == tw.UnetSpec(7, 1, 'instance', 3, 3) and stats == {}


def test_convert_error_is_one_cli_line(tmp_path):
  if 'g' not in flags.FLAGS:
    convert.define_flags()
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  with flagsaver.flagsaver(g=data('D_pixel_ndf8_batch.pth'), workdir=str(tmp_path)):
    with pytest.raises(SystemExit, match='^convert: error: .*D_pixel_ndf8_batch.pth'):
      app.finish('convert', convert.main, ['convert'])
