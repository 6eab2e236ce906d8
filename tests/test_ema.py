"""The generators' weight average (config.ema): its update, the step, checkpoints, use.

Everything here runs without training a model: the step on 2 devices for 2 steps, and
checkpoints written from freshly initialised states.
"""

import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from cyclegan_jax.data import image_files
from cyclegan_jax.deploy import inference
from cyclegan_jax.deploy import translate
from cyclegan_jax.evaluation import evaluate
from cyclegan_jax.methods import cycle_gan
from cyclegan_jax.methods import step_parts
from cyclegan_jax.nets import models
from cyclegan_jax.train import checkpoints
from cyclegan_jax.train import loop as train
from cyclegan_jax.train import step as step_lib
from tests import test_train


def test_update_ema_math_and_warm_up():
  ema = {'G_A': {'w': jnp.array([1.0, 2.0])}, 'G_B': {'w': jnp.array([0.0])}}
  params = {
    'G_A': {'w': jnp.array([3.0, 4.0])},
    'G_B': {'w': jnp.array([10.0])},
    'D_A': {'w': jnp.array([5.0])},  # Critics are not averaged.
  }
  got = step_parts.update_ema(ema, params, jnp.int32(5), decay=0.9)
  assert set(got) == {'G_A', 'G_B'}
  np.testing.assert_allclose(got['G_A']['w'], [0.9 * 1 + 0.1 * 3, 0.9 * 2 + 0.1 * 4])
  np.testing.assert_allclose(got['G_B']['w'], [1.0], rtol=1e-6)
  # Up to start_step the average copies the parameters; after it, it averages.
  copied = step_parts.update_ema(ema, params, jnp.int32(5), decay=0.9, start_step=5)
  np.testing.assert_array_equal(copied['G_A']['w'], params['G_A']['w'])
  after = step_parts.update_ema(ema, params, jnp.int32(6), decay=0.9, start_step=5)
  np.testing.assert_allclose(after['G_A']['w'], got['G_A']['w'])


def test_ema_is_off_by_default_and_changes_nothing():
  config = test_train.tiny_config()
  assert config.ema.decay == 0.0
  networks = test_train.tiny_networks(config)
  assert networks.ema_decay == 0.0
  state = step_lib.create_train_state(
    networks, seed=0, mesh=test_train.mesh_of(1), image_shape=(16, 16, 3), pool_size=0
  )
  assert state.ema == {}
  assert step_lib.inference_generators(state, cycle_gan.METHOD).keys() == {'G_A', 'G_B'}


@pytest.mark.slow  # Compiles a whole step (one of the fast tier's slowest).
def test_step_keeps_the_average_of_both_generators():
  decay = 0.5
  config = test_train.tiny_config(**{'ema.decay': decay})
  data = test_train.batches(2, 4)
  state, _, params, _ = test_train.run(config, 2, data)
  assert set(state.ema) == {'G_A', 'G_B'}
  for name in ('G_A', 'G_B'):
    # ema_0 = p_0; ema_t = d·ema_{t-1} + (1 − d)·p_t.
    want = jax.tree.map(
      lambda p0, p1, p2: decay * (decay * p0 + (1 - decay) * p1) + (1 - decay) * p2,
      params[0][name],
      params[1][name],
      params[2][name],
    )
    jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, atol=1e-7),
      jax.device_get(state.ema[name]),
      want,
    )
  assert (
    step_lib.inference_generators(state, cycle_gan.METHOD) is state.ema
  )  # What the samples use.
  # The average is replicated like the parameters.
  leaf = jax.tree.leaves(state.ema)[0]
  assert leaf.sharding.is_fully_replicated


def _save(workdir, state, config):
  manager = checkpoints.create_manager(workdir)
  train.save_checkpoint(manager, state, config)
  manager.wait_until_finished()
  manager.close()


@pytest.fixture(scope='module', name='written')
def fixture_written(tmp_path_factory):
  """Step-0 checkpoints of one fresh tiny state: with its average, and as if EMA off."""
  config = tiny.get_config()
  config.ema.decay = 0.999
  networks = step_lib.create_networks(config, 10)
  state = step_lib.create_train_state(
    networks, seed=0, mesh=test_train.mesh_of(1), image_shape=(16, 16, 3), pool_size=0
  )
  # An average that differs from the weights, to tell them apart.
  state = state.replace(ema=jax.tree.map(lambda x: x + 0.01, state.ema))
  root = tmp_path_factory.mktemp('ema')
  _save(str(root / 'ema'), state, config)
  plain_config = config.copy_and_resolve_references()
  plain_config.ema.decay = 0.0
  _save(str(root / 'plain'), state.replace(ema={}), plain_config)
  return {'ema': str(root / 'ema'), 'plain': str(root / 'plain')}, config, state


@pytest.fixture(name='ema_workdir')
def fixture_ema_workdir(written):
  workdirs, config, state = written
  return workdirs['ema'], config, state


def test_checkpoint_saves_the_average_and_inference_uses_it(ema_workdir):
  workdir, _, state = ema_workdir
  ema, raw = jax.device_get(state.ema), jax.device_get(state.params)
  auto = inference.restore(workdir)
  assert auto.weights == 'ema'
  jax.tree.map(np.testing.assert_array_equal, auto.params, ema)
  picked = inference.restore(workdir, weights='raw', generators=('G_A',))
  assert picked.weights == 'raw'
  jax.tree.map(np.testing.assert_array_equal, picked.params['G_A'], raw['G_A'])


def test_translate_uses_the_average_unless_told(ema_workdir, tmp_path):
  workdir, _, state = ema_workdir
  image = np.linspace(0, 255, 16 * 16 * 3).reshape(16, 16, 3).astype(np.uint8)
  source = tmp_path / 'in.png'
  inference.save_png(str(source), image)
  outputs = {}
  for weights in ('auto', 'raw'):
    out = tmp_path / weights
    translate.run(
      workdir=workdir, input_path=str(source), output=str(out), progress=False,
      weights=weights,
    )  # fmt: skip
    outputs[weights] = np.asarray(image_files.read_rgb(str(out / 'in.png')))
  generator = models.generator_from_config(tiny.get_config().model)
  want = lambda p: inference.to_uint8(
    generator.apply({'params': jax.device_get(p)}, inference.from_uint8(image)[None])[0]
  )
  np.testing.assert_array_equal(outputs['auto'], want(state.ema['G_A']))
  np.testing.assert_array_equal(outputs['raw'], want(state.params['G_A']))
  assert not np.array_equal(outputs['auto'], outputs['raw'])


def test_old_checkpoints_restore_with_ema_off_and_refuse_ema(written):
  workdir = written[0]['plain']
  manager = checkpoints.create_manager(workdir, create=False)
  assert not checkpoints.has_item(manager, 0, checkpoints.EMA)
  manager.close()
  assert inference.restore(workdir).weights == 'raw'
  with pytest.raises(ValueError, match='no weight average'):
    inference.restore(workdir, weights='ema')


def _moved(state):
  """The same structure and shardings, other values: what a restore must overwrite."""
  return state.replace(
    params=jax.tree.map(lambda x: x + 1.0, state.params),
    ema=jax.tree.map(lambda x: x + 2.0, state.ema),
  )


def test_resuming_with_ema_on_from_a_checkpoint_without_it(written, caplog):
  workdirs, _, saved = written
  manager = checkpoints.create_manager(workdirs['plain'], create=False)
  with caplog.at_level(logging.WARNING):
    state = train.restore_checkpoint(manager, _moved(saved), 0, cycle_gan.METHOD)
  manager.close()
  assert 'has no weight average' in caplog.text
  raw = jax.device_get(saved.params)
  jax.tree.map(np.testing.assert_array_equal, state.params, raw)
  jax.tree.map(np.testing.assert_array_equal, state.ema, {k: raw[k] for k in state.ema})


def test_resuming_restores_the_saved_average(written):
  workdirs, _, saved = written
  manager = checkpoints.create_manager(workdirs['ema'], create=False)
  state = train.restore_checkpoint(manager, _moved(saved), 0, cycle_gan.METHOD)
  manager.close()
  jax.tree.map(np.testing.assert_array_equal, state.ema, jax.device_get(saved.ema))


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_evaluation_uses_the_average_unless_told(ema_workdir):
  workdir, config, _ = ema_workdir
  config = config.copy_and_resolve_references()
  config.eval.max_images = 2
  summaries = {}
  for weights in ('auto', 'raw'):
    config.eval.weights = weights
    summaries[weights] = evaluate.evaluate(config, workdir)
    with open(os.path.join(workdir, evaluate.EVAL_DIR, 'step_0', 'metrics.json')) as f:
      assert json.load(f)['weights'] == {'auto': 'ema', 'raw': 'raw'}[weights]
  assert summaries['auto'] != summaries['raw']
