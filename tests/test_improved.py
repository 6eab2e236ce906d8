"""The recipe configs: the colour transfer recipe (configs/colour_transfer.py) and the
general one (configs/improved.py): valid, only their switches set, and they train."""

import dataclasses
import importlib.util

import jax
import numpy as np
import pytest

from configs import default
from configs import demo
from configs import tiny
from cyclegan_jax.cli import config_checks
from cyclegan_jax.deploy import inference
from cyclegan_jax.nets import models
from cyclegan_jax.studies import recipes
from cyclegan_jax.train import loop as train
from tests import test_train


def load(path):
  spec = importlib.util.spec_from_file_location('recipe', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def changed(config, base):
  """{field: value} where `config` differs from `base` (dotted field names)."""
  flat = lambda c, prefix='': {
    k2: v2
    for k, v in c.items()
    for k2, v2 in (
      flat(v, f'{prefix}{k}.').items() if hasattr(v, 'items') else [(f'{prefix}{k}', v)]
    )
  }
  a, b = flat(config), flat(base)
  return {k: v for k, v in a.items() if b.get(k) != v}


@pytest.mark.parametrize(
  'path,base',
  [
    ('configs/colour_transfer.py', default.get_config),
    ('configs/demo_colour_transfer.py', demo.get_config),
  ],
)
def test_recipe_is_valid_and_changes_only_switches(path, base):
  config = load(path)
  config_checks.validate(config)
  diff = changed(config, base())
  wanted = recipes.overrides(recipes.COLOUR_TRANSFER)
  assert diff and set(diff) == set(wanted)
  for field, value in diff.items():
    # Only the weight average's span may differ (longer for the paper's schedule).
    assert value == wanted[field] or field.startswith('ema.'), field


def test_improved_is_the_paper_with_the_study_row_it_names():
  config = load('configs/improved.py')
  config_checks.validate(config)
  diff = changed(config, default.get_config())
  assert diff == recipes.combination_overrides(recipes.IMPROVED)
  # What the study chose; docs say so.
  assert diff == {
    'model.head': 'colour_skip',
    'ema.decay': 0.99,
    'ema.start_step': 100,
    'loss.r1_gamma': 0.1,
    'loss.lambda_identity': 0.1,
  }


def tiny_colour_transfer():
  config = tiny.shrink(load('configs/colour_transfer.py'))
  config.dataset = 'synthetic:colors'
  config.model.netG = 'resnet_6blocks'
  config.ema.start_step = 0
  return config


@pytest.mark.slow
def test_recipe_trains_two_steps_and_restores_its_generators(tmp_path):
  """The recipe trains; inference restores its layout and the weights evaluation uses
  (the average when the recipe keeps one)."""
  config = tiny_colour_transfer()
  workdir = str(tmp_path)
  state = train.train_and_evaluate(config, workdir)
  assert int(jax.device_get(state.step)) == 2
  restored = inference.restore(workdir)
  for field in ('upsample', 'downsample', 'head'):
    assert getattr(restored.generator, field) == config.model[field], field
  if config.ema.decay > 0:
    assert set(state.ema) == {'G_A', 'G_B'} and restored.weights == 'ema'
    want = jax.device_get(state.ema)
  else:
    assert state.ema == {} and restored.weights == 'raw'
    want = {k: jax.device_get(state.params[k]) for k in ('G_A', 'G_B')}
  jax.tree.map(np.testing.assert_array_equal, restored.params, want)


@pytest.mark.slow
def test_curve_head_and_plain_critics_train_alike_on_one_and_four_devices():
  """The step with the curve head, critics without norm and no identity loss, as
  1 device × 4 pairs and 4 devices × 1 pair: the same losses and parameters (to what
  Adam makes of rounding), and the zero-initialised head did learn."""
  config = test_train.tiny_config(
    **{'model.head': 'curve', 'model.norm_D': 'none', 'loss.lambda_identity': 0.0}
  )
  networks = dataclasses.replace(
    test_train.tiny_networks(config),
    generator=models.ResnetGenerator(ngf=4, num_blocks=1, head='curve'),
    discriminator=models.PatchDiscriminator(
      ndf=4, num_layers=test_train.D_LAYERS, norm='none'
    ),
  )
  data = test_train.batches(2, 4)
  _, metrics1, params1, _ = test_train.run(config, 1, data, networks)
  _, metrics4, params4, _ = test_train.run(config, 4, data, networks)
  assert 'loss_idt_A' not in metrics1[0] or metrics1[0]['loss_idt_A'] == 0
  for m1, m4 in zip(metrics1, metrics4):
    for k in m1:
      np.testing.assert_allclose(m4[k], m1[k], rtol=1e-4, atol=1e-6, err_msg=k)
  lr = config.optim.lr
  for (path, p1), p4 in zip(
    jax.tree_util.tree_leaves_with_path(params1[-1]), jax.tree.leaves(params4[-1])
  ):
    diff = np.abs(p1 - p4)
    assert np.max(diff) < 2 * 2 * lr, jax.tree_util.keystr(path)
    if not test_train.is_pre_norm_bias(path):  # Rounding noise that Adam magnifies.
      assert np.mean(diff < 2e-5) >= 0.99, jax.tree_util.keystr(path)
  for name in ('G_A', 'G_B'):
    assert np.any(params1[-1][name]['head']['kernel'] != 0)
    assert not np.any(params1[0][name]['head']['kernel'])


def _generator_loss_and_grad(skip_curve: bool):
  """The tiny colour_skip generators' objective and its gradient, with or without
  `loss.identity_skips_curve`."""
  from cyclegan_jax.methods import cycle_gan  # pylint: disable=g-import-not-at-top
  from tests import test_train as tt  # pylint: disable=g-import-not-at-top

  config = tt.tiny_config(
    **{'model.head': 'colour_skip', 'loss.identity_skips_curve': skip_curve}
  )
  config_checks.validate(config)
  networks = dataclasses.replace(
    tt.tiny_networks(config),
    generator=models.ResnetGenerator(ngf=4, num_blocks=1, head='colour_skip'),
  )
  params = cycle_gan.init_params(networks, jax.random.key(0), tt.IMAGE)
  # A trained-looking colour map (it starts at zero), so every layer has a gradient.
  params = jax.tree.map(lambda p: p + 0.05, params)
  g = {k: params[k] for k in cycle_gan.GENERATORS}
  d = {k: params[k] for k in cycle_gan.DISCRIMINATORS}
  a, b = (jax.numpy.asarray(tt.batches(1, 2)[0][k]) for k in 'AB')
  return jax.value_and_grad(
    lambda p: cycle_gan.generator_losses(p, d, a, b, networks=networks)[0]
  )(g)


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_curve_free_identity_keeps_the_loss_and_moves_only_the_colour_maps_gradient():
  """The same objective; only the identity terms' gradient into `curve` is dropped."""
  total, grads = _generator_loss_and_grad(False)
  total_skip, grads_skip = _generator_loss_and_grad(True)
  np.testing.assert_allclose(total_skip, total, rtol=1e-6)
  for name, parts in grads.items():
    assert 'curve' in parts
    for part, grad in parts.items():
      same = jax.tree.map(
        lambda x, y: bool(np.allclose(x, y, rtol=1e-5, atol=1e-7)),
        grads_skip[name][part],
        grad,
      )
      assert all(jax.tree.leaves(same)) == (part != 'curve'), (name, part)


def test_curve_free_identity_needs_a_colour_map():
  config = default.get_config()
  config.loss.identity_skips_curve = True
  with pytest.raises(ValueError, match="'curve' and 'colour_skip' heads"):
    config_checks.validate(config)
  config.model.head = 'colour_skip'
  config_checks.validate(config)
