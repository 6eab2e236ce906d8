"""The CycleGAN paper's baselines: SimGAN, feature loss + GAN, BiGAN/ALI.

Loss definitions against numpy formulas on hand-made tensors, the Flax VGG-16 against
torch (tests/data/make_vgg_fixture.py) and a numpy forward, the weights file's checks,
1 device == 4 devices, and each method through training, evaluation and translation.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from configs import demo_baselines
from cyclegan_jax import methods
from cyclegan_jax.cli import config_checks
from cyclegan_jax.deploy import inference
from cyclegan_jax.deploy import translate
from cyclegan_jax.evaluation import evaluate
from cyclegan_jax.methods import bigan
from cyclegan_jax.methods import regularized_gan
from cyclegan_jax.nets import torch_weights
from cyclegan_jax.nets import vgg
from cyclegan_jax.train import checkpoints
from cyclegan_jax.train import loop as train
from cyclegan_jax.train import step as step_lib
from tests import fid_fixtures
from tests import tiny_run
from tests import updates
from tests import vgg_fixtures

SIZE = 16
FIXTURE = os.path.join(os.path.dirname(__file__), 'data', 'vgg16_relu4_2.npz')


@pytest.fixture(scope='module', name='vgg_file')
def fixture_vgg_file(tmp_path_factory) -> str:
  """Random VGG-16 weights as a torch-format .pth, with a classifier key to ignore."""
  path = str(tmp_path_factory.mktemp('vgg') / vgg.WEIGHTS_FILE)
  fid_fixtures.write_pth(
    path, vgg_fixtures.random_state_dict({'classifier.6.bias': (1000,)})
  )
  return path


def tiny_config(method: str, **changes):
  config = tiny_run.tiny_config()
  config.method = method
  config.loss.lambda_identity = 0.0
  for field, value in changes.items():
    group, _, name = field.rpartition('.')
    (config[group] if group else config)[name] = value
  return config


def batch(seed: int, n: int = 4) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  a = rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
  b = rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
  return {'A': a, 'B': b}


def init(networks, num_devices: int = 1, pool_size: int = 0):
  mesh = jax.make_mesh((num_devices,), ('data',), devices=jax.devices()[:num_devices])
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=(SIZE, SIZE, 3), pool_size=pool_size
  )
  return mesh, state


def networks_of(config):
  return step_lib.create_networks(config, epoch_length=100)


# --------------------------------------------------------------------------------------
# Loss definitions
# --------------------------------------------------------------------------------------


def test_pixel_content_is_the_mean_absolute_difference():
  x = np.array([[[[0.5, -1.0, 0.0]]], [[[1.0, 0.25, -0.5]]]], np.float32)
  y = np.array([[[[0.0, -0.5, 0.5]]], [[[-1.0, 0.25, 0.5]]]], np.float32)
  got = regularized_gan.content_loss('pixel', {}, jnp.asarray(x), jnp.asarray(y))
  np.testing.assert_allclose(float(got), (0.5 + 0.5 + 0.5 + 2 + 0 + 1) / 6, rtol=1e-6)


def test_simgan_generator_loss_is_lsgan_plus_lambda_pixel_l1():
  networks = networks_of(tiny_config('simgan', **{'baseline.lambda_content': 3.0}))
  _, state = init(networks)
  x = batch(0)['A']
  params = jax.device_get(state.params)
  total, (terms, fake) = regularized_gan.generator_loss(
    params['G'], params['D'], {}, x, networks=networks
  )
  pred = np.asarray(networks.discriminator.apply({'params': params['D']}, fake))
  gan = np.mean((pred - 1.0) ** 2)
  pixel = 3.0 * np.mean(np.abs(x - np.asarray(fake)))
  np.testing.assert_allclose(float(terms['G_GAN']), gan, rtol=1e-5)
  np.testing.assert_allclose(float(terms['G_pixel']), pixel, rtol=1e-5)
  np.testing.assert_allclose(float(total), gan + pixel, rtol=1e-5)


def test_simgan_critic_loss_is_halved_lsgan():
  networks = networks_of(tiny_config('simgan'))
  _, state = init(networks)
  d = jax.device_get(state.params['D'])
  real, fake = batch(1)['B'], batch(2)['A']
  _, terms = regularized_gan.critic_loss(
    d, real, fake, critic=networks.discriminator, gan_mode='lsgan'
  )
  apply = lambda x: np.asarray(networks.discriminator.apply({'params': d}, x))
  want = 0.5 * (np.mean((apply(real) - 1) ** 2) + np.mean(apply(fake) ** 2))
  np.testing.assert_allclose(float(terms['loss_D']), want, rtol=1e-5)


@pytest.mark.parametrize('gan_mode', ['lsgan', 'vanilla'])
def test_bigan_terms_swap_the_labels_for_the_generators(gan_mode):
  pred_fake = jnp.asarray([[0.2, -0.4], [1.5, 0.0]], jnp.float32)  # D(x, G(x)).
  pred_real = jnp.asarray([[0.9, 0.1], [-0.3, 2.0]], jnp.float32)  # D(F(y), y).
  f, r = np.asarray(pred_fake, np.float64), np.asarray(pred_real, np.float64)
  if gan_mode == 'lsgan':
    to_one = lambda p: np.mean((p - 1) ** 2)
    to_zero = lambda p: np.mean(p**2)
  else:
    to_one = lambda p: np.mean(np.log1p(np.exp(-p)))  # -log σ(p).
    to_zero = lambda p: np.mean(np.log1p(np.exp(p)))  # -log(1 - σ(p)).
  g = bigan.generator_terms(pred_fake, pred_real, gan_mode)
  np.testing.assert_allclose(float(g['G_GAN']), to_one(f), rtol=1e-5)
  np.testing.assert_allclose(float(g['F_GAN']), to_zero(r), rtol=1e-5)
  d = bigan.critic_terms(pred_real, pred_fake, gan_mode)
  np.testing.assert_allclose(
    float(d['loss_D']), 0.5 * (to_one(r) + to_zero(f)), rtol=1e-5
  )


def test_bigan_critic_judges_joint_pairs_a_first():
  config = tiny_config('bigan', **{'model.output_nc': 1})
  networks = networks_of(config)
  _, state = init(networks)
  params = jax.device_get(state.params)
  assert params['D']['conv_0']['kernel'].shape[2] == 3 + 1  # input_nc + output_nc.
  data = batch(3)
  data['B'] = data['B'][..., :1]
  _, (terms, pairs) = bigan.generator_loss(
    {k: params[k] for k in bigan.GENERATORS},
    params['D'],
    data['A'],
    data['B'],
    networks=networks,
  )
  fake_b = networks.generator.apply({'params': params['G']}, data['A'])
  fake_a = networks.generator_f.apply({'params': params['F']}, data['B'])
  np.testing.assert_array_equal(pairs['fake'][..., :3], data['A'])
  np.testing.assert_allclose(pairs['fake'][..., 3:], fake_b, atol=1e-6)
  np.testing.assert_allclose(pairs['real'][..., :3], fake_a, atol=1e-6)
  np.testing.assert_array_equal(pairs['real'][..., 3:], data['B'])
  critic = lambda x: networks.discriminator.apply({'params': params['D']}, x)
  want = bigan.generator_terms(critic(pairs['fake']), critic(pairs['real']), 'lsgan')
  np.testing.assert_allclose(float(terms['G_GAN']), float(want['G_GAN']), rtol=1e-5)


# --------------------------------------------------------------------------------------
# VGG-16
# --------------------------------------------------------------------------------------


def test_the_flax_vgg_matches_torch_on_torchvision_layout():
  variables = vgg.variables_from_state_dict(vgg_fixtures.random_state_dict())
  x = vgg_fixtures.fixture_input()
  got = vgg.Vgg16Relu42().apply(variables, vgg.imagenet_normalise(jnp.asarray(x)))
  want = np.load(FIXTURE)['relu4_2']
  assert got.shape == want.shape == (2, 3, 5, 512)
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-4, rtol=1e-4)


def _numpy_vgg(state_dict: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
  """relu4_2 by loops over torchvision's layers, in float64 (images in [-1, 1])."""
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  h = ((x.astype(np.float64) + 1) / 2 - mean) / std
  pools_before = {5, 10, 17}
  for index, _, _ in vgg_fixtures.CONVS:
    if index in pools_before:
      n, hh, ww, c = h.shape
      h = h[:, : hh // 2 * 2, : ww // 2 * 2].reshape(n, hh // 2, 2, ww // 2, 2, c)
      h = h.max(axis=(2, 4))
    w = state_dict[f'features.{index}.weight'].astype(np.float64)  # OIHW.
    p = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros(h.shape[:3] + (w.shape[0],))
    for i in range(3):
      for j in range(3):
        window = p[:, i : i + h.shape[1], j : j + h.shape[2]]
        out += np.einsum('nhwc,oc->nhwo', window, w[:, :, i, j])
    h = np.maximum(out + state_dict[f'features.{index}.bias'], 0)
  return h


def test_feature_distance_is_the_mean_l1_of_relu4_2():
  sd = vgg_fixtures.random_state_dict()
  variables = vgg.variables_from_state_dict(sd)
  rng = np.random.default_rng(7)
  x = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  y = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  want = np.mean(np.abs(_numpy_vgg(sd, x) - _numpy_vgg(sd, y)))
  got = regularized_gan.content_loss('vgg', variables, jnp.asarray(x), jnp.asarray(y))
  np.testing.assert_allclose(float(got), want, rtol=1e-4)
  # Gray images are read as gray RGB, as torchvision's models are fed them.
  gray = regularized_gan.content_loss(
    'vgg', variables, jnp.asarray(x[..., :1]), jnp.asarray(y[..., :1])
  )
  rgb = lambda im: np.repeat(im[..., :1], 3, axis=-1)
  want = np.mean(np.abs(_numpy_vgg(sd, rgb(x)) - _numpy_vgg(sd, rgb(y))))
  np.testing.assert_allclose(float(gray), want, rtol=1e-4)


def test_the_weights_file_is_read_without_torch_ignoring_later_layers(vgg_file):
  variables = vgg.load_weights(vgg_file)
  assert set(variables['params']) == {f'features_{i}' for i, _, _ in vgg_fixtures.CONVS}
  sd = vgg_fixtures.random_state_dict()
  np.testing.assert_array_equal(
    variables['params']['features_19']['kernel'],
    sd['features.19.weight'].transpose(2, 3, 1, 0),
  )


def test_missing_or_wrong_weights_are_refused_in_one_line(tmp_path, monkeypatch):
  monkeypatch.delenv(vgg.WEIGHTS_ENV, raising=False)
  config = tiny_config('feature_gan')
  with pytest.raises(ValueError) as e:
    networks_of(config)
  message = str(e.value)
  assert '\n' not in message and vgg.WEIGHTS_URL in message
  assert '--config.baseline.vgg_weights=PATH' in message and vgg.WEIGHTS_ENV in message
  monkeypatch.setenv(vgg.WEIGHTS_ENV, str(tmp_path / 'nowhere.pth'))
  with pytest.raises(ValueError, match='nowhere.pth does not exist') as e:
    networks_of(config)
  assert '\n' not in str(e.value)
  wrong = str(tmp_path / 'wrong.pth')
  sd = vgg_fixtures.random_state_dict()
  sd['features.19.weight'] = sd['features.19.weight'][:, :256]
  fid_fixtures.write_pth(wrong, sd)
  config.baseline.vgg_weights = wrong
  with pytest.raises(torch_weights.WeightsFileError) as e:
    networks_of(config)
  assert str(e.value).startswith(wrong + ': not a torchvision VGG-16 state dict')
  assert "'features.19.weight' has shape (512, 256, 3, 3)" in str(e.value)
  # No content term, no file needed.
  config.baseline.vgg_weights = None
  config.baseline.lambda_content = 0.0
  monkeypatch.delenv(vgg.WEIGHTS_ENV)
  assert networks_of(config).content_variables is None


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------


def test_registered_with_their_directions():
  assert methods.get('simgan').directions == {'AtoB': ('G', None)}
  assert methods.get('feature_gan').directions == {'AtoB': ('G', None)}
  assert methods.get('bigan').directions == {'AtoB': ('G', 'F'), 'BtoA': ('F', 'G')}
  for method in ('simgan', 'feature_gan'):
    config = tiny_config(method, direction='BtoA')
    assert methods.get(method).configure(config).directions == {'BtoA': ('G', None)}
  with pytest.raises(ValueError, match="direction must be 'AtoB' or 'BtoA', got 'AB'"):
    methods.get('simgan').configure(tiny_config('simgan', direction='AB'))


@pytest.mark.parametrize('method', ['simgan', 'feature_gan', 'bigan'])
def test_cycle_gan_only_options_are_refused_in_one_line(method):
  config = tiny_config(method, **{'loss.r1_gamma': 1.0})
  with pytest.raises(ValueError) as e:
    networks_of(config)
  assert str(e.value).startswith(f'loss.r1_gamma=1.0 does not apply to method={method}')
  assert '\n' not in str(e.value)


def test_config_checks_refuse_bad_values_in_one_line():
  config = tiny_config('simgan', **{'baseline.lambda_content': -1.0})
  with pytest.raises(ValueError, match=r'baseline.lambda_content=-1.0: must be'):
    config_checks.validate(config)
  config = tiny_config('simgan', **{'baseline.vgg_weights': ''})
  with pytest.raises(ValueError, match='baseline.vgg_weights'):
    config_checks.validate(config)
  config = tiny_config('simgan', **{'model.output_nc': 1})
  with pytest.raises(ValueError, match="simgan's pixel term compares G"):
    config_checks.validate(config)
  config_checks.validate(tiny_config('feature_gan', **{'model.output_nc': 1}))


def test_the_paper_configs_are_cycle_gan_settings():
  from configs import bigan as bigan_config  # pylint: disable=g-import-not-at-top
  from configs import feature_gan  # pylint: disable=g-import-not-at-top
  from configs import simgan  # pylint: disable=g-import-not-at-top

  for module, method in ((simgan, 'simgan'), (feature_gan, 'feature_gan')):
    config = module.get_config()
    config_checks.validate(config)
    assert config.method == method and config.baseline.lambda_content == 10.0
  config = bigan_config.get_config()
  assert config.method == 'bigan'
  assert (config.model.netG, config.model.netD, config.loss.gan_mode) == (
    'resnet_9blocks',
    'basic',
    'lsgan',
  )
  assert (config.pool_size, config.optim.lr, config.optim.beta1) == (50, 2e-4, 0.5)
  assert (config.num_epochs, config.num_epochs_decay, config.crop_size) == (100, 100, 256)
  for method in ('simgan', 'feature_gan', 'bigan'):
    config = demo_baselines.get_config(method)
    config_checks.validate(config)
    assert config.method == method and config.dataset.startswith('synthetic:')


# --------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------


@pytest.mark.slow  # Over 10 s on 2 cores.
@pytest.mark.parametrize('method', ['simgan', 'bigan'])
def test_four_devices_equal_one_at_the_same_global_batch(method):
  """4 devices × 1 image and 1 device × 4: the first update exactly (SGD, so the update
  is the gradient) and both steps' losses."""
  networks = updates.with_sgd(networks_of(tiny_config(method)))
  results = []
  for n in (1, 4):
    mesh, state = init(networks, n)
    step = step_lib.make_parallel_train_step(networks, mesh, state)
    params, metrics = [], []
    for seed in (3, 4):
      state, m = step(state, next(step_lib.device_batches([batch(seed)], mesh)))
      params.append(jax.device_get(state.params))
      metrics.append(jax.device_get(m))
    results.append((params, metrics))
  (p1, m1), (p4, m4) = results
  _, start = init(networks)
  # Only the first update: after it, summation-order noise can tip a leaky ReLU across
  # its kink and change a second gradient by far more than the noise itself.
  updates.assert_updates_close(p4[0], p1[0], jax.device_get(start.params))
  for one, four in zip(m1, m4):
    assert set(one) == set(four)
    for k in one:
      np.testing.assert_allclose(float(four[k]), float(one[k]), rtol=1e-4, err_msg=k)


def test_the_pool_feeds_the_critic_earlier_fakes():
  networks = networks_of(tiny_config('simgan'))
  mesh, state = init(networks, 1, pool_size=2)
  step = step_lib.make_parallel_train_step(networks, mesh, state)
  for seed in range(3):
    state, _ = step(state, next(step_lib.device_batches([batch(seed)], mesh)))
  assert int(jax.device_get(state.pools['B'].count)[0]) == 2


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_b_to_a_is_the_a_to_b_step_with_the_domains_swapped():
  """direction=BtoA: G reads B and D judges A, exactly as AtoB on a swapped batch."""
  results = []
  for direction in ('AtoB', 'BtoA'):
    networks = networks_of(tiny_config('simgan', direction=direction))
    mesh, state = init(networks, 1, pool_size=2)
    step = step_lib.make_parallel_train_step(networks, mesh, state)
    for seed in (3, 4):
      data = batch(seed)
      if direction == 'BtoA':  # Its source, B, gets what AtoB reads as A.
        data = {'A': data['B'], 'B': data['A']}
      state, metrics = step(state, next(step_lib.device_batches([data], mesh)))
    results.append((jax.device_get(state.params), jax.device_get(metrics), state))
  (p_ab, m_ab, s_ab), (p_ba, m_ba, s_ba) = results
  assert set(s_ab.pools) == {'B'} and set(s_ba.pools) == {'A'}
  jax.tree.map(np.testing.assert_array_equal, p_ba, p_ab)
  assert m_ab == m_ba


@pytest.mark.slow  # Compiles a whole step (one of the fast tier's slowest).
def test_feature_gan_steps_and_keeps_vgg_frozen(vgg_file):
  config = tiny_config('feature_gan', **{'baseline.vgg_weights': vgg_file})
  networks = networks_of(config)
  mesh, state = init(networks, 1)
  before = jax.device_get(state.content_net)
  step = step_lib.make_parallel_train_step(networks, mesh, state)
  g0 = jax.device_get(state.params['G'])
  state, metrics = step(state, next(step_lib.device_batches([batch(0)], mesh)))
  assert np.isfinite(float(metrics['G_feature'])) and float(metrics['G_feature']) > 0
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state.content_net), before)
  changed = jax.tree.map(
    lambda a, b: not np.array_equal(a, b), jax.device_get(state.params['G']), g0
  )
  assert any(jax.tree.leaves(changed))


# --------------------------------------------------------------------------------------
# Through the shared loop, evaluation and translation
# --------------------------------------------------------------------------------------


def _photo(tmp_path) -> str:
  path = str(tmp_path / 'photo.png')
  Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(path)
  return path


@pytest.fixture(scope='module', name='trained')
def fixture_trained(tmp_path_factory, vgg_file):
  """{method: (workdir, config, state)}: each trained 2 steps on the tiny config."""
  runs = {}
  for method in ('simgan', 'feature_gan', 'bigan'):
    config = tiny_config(method, **{'baseline.vgg_weights': vgg_file})
    workdir = str(tmp_path_factory.mktemp(method))
    runs[method] = (workdir, config, train.train_and_evaluate(config, workdir))
  return runs


@pytest.mark.slow
@pytest.mark.parametrize('method', ['simgan', 'feature_gan', 'bigan'])
def test_trains_checkpoints_and_restores_its_generators(trained, method):
  workdir, _, state = trained[method]
  assert int(jax.device_get(state.step)) == 2
  manager = checkpoints.create_manager(workdir, create=False)
  assert manager.all_steps() == [2]
  assert checkpoints.saved_config(manager, 2)['method'] == method
  manager.close()
  restored = inference.restore(workdir)
  want = set(methods.get(method).generators)
  assert set(restored.params) == want
  for name in want:
    jax.tree.map(
      np.testing.assert_array_equal,
      restored.params[name],
      jax.device_get(state.params[name]),
    )


@pytest.mark.slow
@pytest.mark.parametrize('method', ['simgan', 'bigan'])
def test_evaluates_and_translates_its_directions(trained, method, tmp_path):
  workdir, config, _ = trained[method]
  summary = evaluate.evaluate(config, workdir)
  directions = tuple(methods.get(method).directions)
  assert {k.split('/')[0] for k in summary} == set(directions)
  report = os.path.join(workdir, evaluate.EVAL_DIR, 'step_2', 'metrics.json')
  assert list(json.loads(open(report).read())['num_images']) == list(directions)
  for direction in directions:
    written = translate.run(
      workdir=workdir,
      input_path=_photo(tmp_path),
      output=str(tmp_path / direction),
      direction=direction,
      progress=False,
    )
    assert Image.open(written[0]).size == (24, 20)


@pytest.mark.slow
def test_simgan_refuses_to_translate_b_to_a_in_one_line(trained, tmp_path):
  with pytest.raises(SystemExit) as e:
    translate.run(
      workdir=trained['simgan'][0],
      input_path=_photo(tmp_path),
      output=str(tmp_path / 'out'),
      direction='BtoA',
      progress=False,
    )
  assert 'simgan model translates AtoB only, not BtoA' in str(e.value)
  assert '\n' not in str(e.value)


@pytest.mark.slow
def test_feature_gan_resumes_with_its_vgg_from_the_checkpoint(trained):
  workdir, config, state = trained['feature_gan']
  resumed = config.copy_and_resolve_references()
  resumed.num_train_steps = 3
  resumed.checkpoint_every_steps = 3
  new = train.train_and_evaluate(resumed, workdir)
  assert int(jax.device_get(new.step)) == 3
  jax.tree.map(
    np.testing.assert_array_equal,
    jax.device_get(new.content_net),
    jax.device_get(state.content_net),
  )


@pytest.mark.slow
def test_simgan_trained_b_to_a_evaluates_and_translates_that_way_only(tmp_path):
  config = tiny_config('simgan', direction='BtoA')
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  summary = evaluate.evaluate(config, workdir)
  assert summary and {k.split('/')[0] for k in summary} == {'BtoA'}
  written = translate.run(
    workdir=workdir,
    input_path=_photo(tmp_path),
    output=str(tmp_path / 'out'),
    direction='BtoA',
    progress=False,
  )
  assert Image.open(written[0]).size == (24, 20)
  with pytest.raises(SystemExit, match='simgan model translates BtoA only, not AtoB'):
    translate.run(
      workdir=workdir,
      input_path=_photo(tmp_path),
      output=str(tmp_path / 'out2'),
      direction='AtoB',
      progress=False,
    )
