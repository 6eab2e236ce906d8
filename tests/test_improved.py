"""The improved recipe (configs/improved.py): valid, only switches set, and it trains."""

import importlib.util

import jax
import numpy as np
import pytest

from configs import default
from configs import demo
from configs import tiny
from cyclegan_jax import config_checks
from cyclegan_jax import inference
from cyclegan_jax import recipes
from cyclegan_jax import train


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
    ('configs/improved.py', default.get_config),
    ('configs/demo_improved.py', demo.get_config),
  ],
)
def test_recipe_is_valid_and_changes_only_switches(path, base):
  config = load(path)
  config_checks.validate(config)
  diff = changed(config, base())
  wanted = recipes.overrides(recipes.IMPROVED)
  assert diff and set(diff) == set(wanted)
  for field, value in diff.items():
    # Only the weight average's span may differ (longer for the paper's schedule).
    assert value == wanted[field] or field.startswith('ema.'), field


def tiny_improved():
  config = tiny.shrink(load('configs/improved.py'))
  config.dataset = 'synthetic:colors'
  config.model.netG = 'resnet_6blocks'
  config.ema.start_step = 0
  return config


@pytest.mark.slow
def test_recipe_trains_two_steps_and_evaluates_with_the_average(tmp_path):
  config = tiny_improved()
  workdir = str(tmp_path)
  state = train.train_and_evaluate(config, workdir)
  assert int(jax.device_get(state.step)) == 2
  assert set(state.ema) == {'G_A', 'G_B'}
  restored = inference.restore(workdir)
  assert restored.weights == ('ema' if config.ema.decay > 0 else 'raw')
  assert restored.generator.upsample == config.model.upsample
  assert restored.generator.downsample == config.model.downsample
  jax.tree.map(np.testing.assert_array_equal, restored.params, jax.device_get(state.ema))
