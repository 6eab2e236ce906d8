"""The training loop: checkpoints, resume, SIGTERM, non-finite halt, summaries."""

import glob
import json
import os
import signal
import threading
import time

import jax
import numpy as np
import pytest

from cyclegan_jax.train import checkpoints
from cyclegan_jax.train import loop as train
from cyclegan_jax.train import step as step_lib
from tests import tiny_run

# End-to-end runs (training loops, benchmark scripts in subprocesses).
pytestmark = pytest.mark.slow


def tiny_config(**overrides):
  """tiny_run's config, set up so that resuming is checkable: no pool, 6 steps."""
  config = tiny_run.tiny_config()
  config.pool_size = 0
  config.num_train_steps = 6
  config.num_epochs = 1  # Constant for 3 steps, then decaying: resume must keep it.
  config.num_epochs_decay = 1
  config.lr_schedule_granularity = 'step'
  config.sample_every_steps = 3
  config.checkpoint_every_steps = 3
  for key, value in overrides.items():
    setattr(config, key, value)
  return config


def params_of(state):
  return jax.device_get(state.params)


def assert_trees_close(a, b, atol=1e-6):
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, atol=atol, err_msg=jax.tree_util.keystr(path))


def test_resume_equals_straight_run_and_keeps_schedule(tmp_path):
  config = tiny_config()
  straight = train.train_and_evaluate(config, str(tmp_path / 'straight'))

  workdir = str(tmp_path / 'resumed')
  first = train.train_and_evaluate(config, workdir, max_steps=3)
  assert int(first.step) == 3
  assert checkpoints.create_manager(workdir).all_steps() == [3]
  resumed = train.train_and_evaluate(config, workdir)
  assert int(resumed.step) == 6

  # The learning rate decays over steps 3..5, so equal parameters mean the schedule
  # (and Adam's moments and the data order) continued where they stopped.
  assert_trees_close(params_of(straight), params_of(resumed))
  assert_trees_close(
    jax.device_get(straight.opt_state_g), jax.device_get(resumed.opt_state_g)
  )
  assert float(step_lib.create_learning_rate_schedule(config, 1)(5)) < config.optim.lr

  # The workdir has what the README promises.
  assert (
    json.load(open(os.path.join(workdir, 'config.json')))['dataset'] == 'synthetic:colors'
  )
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  assert checkpoints.create_manager(workdir).all_steps() == [3, 6]
  params, saved_config, step = checkpoints.restore_params(workdir)
  assert step == 6 and saved_config['model']['ngf'] == tiny_run.NGF
  assert_trees_close(params, params_of(resumed))


def test_too_small_crop_for_the_critic_is_a_clear_error(tmp_path):
  config = tiny_config()
  config.model.netD = 'basic'
  with pytest.raises(
    ValueError,
    match=r'config\.crop_size=16: must be >= 24 for the '
    '3-layer PatchGAN',
  ):
    train.train_and_evaluate(config, str(tmp_path))


def test_keeps_only_the_last_checkpoints(tmp_path):
  config = tiny_config(checkpoint_every_steps=1, keep_checkpoints=2, num_train_steps=4)
  train.train_and_evaluate(config, str(tmp_path))
  assert checkpoints.create_manager(str(tmp_path)).all_steps() == [3, 4]


def test_sigterm_saves_and_stops(tmp_path):
  config = tiny_config(
    num_train_steps=10_000,
    checkpoint_every_steps=10_000,
    log_every_steps=50,
    sample_every_steps=10_000,
  )
  workdir = str(tmp_path)
  sent = []

  def kill_when_training():
    # The first summary's event file appears once steps run; then ask to stop.
    deadline = time.time() + 300
    while time.time() < deadline and not glob.glob(os.path.join(workdir, 'events.*')):
      time.sleep(0.2)
    time.sleep(1.0)
    sent.append(time.time())
    os.kill(os.getpid(), signal.SIGTERM)

  threading.Thread(target=kill_when_training, daemon=True).start()
  state = train.train_and_evaluate(config, workdir)
  assert sent, 'the run ended before the signal was sent'
  stopped = int(state.step)
  assert 0 < stopped < 10_000
  assert checkpoints.create_manager(workdir).latest_step() == stopped
  # The previous handler is back: the loop does not swallow later SIGTERMs.
  assert signal.getsignal(signal.SIGTERM) is not None


def test_non_finite_loss_halts_and_keeps_last_good_checkpoint(tmp_path):
  workdir = str(tmp_path)
  config = tiny_config(num_train_steps=6, checkpoint_every_steps=2)
  train.train_and_evaluate(config, workdir, max_steps=2)
  good, _, _ = checkpoints.restore_params(workdir, 2)

  config.optim.lr = 1e38  # Adam's unit-size steps times this overflow float32.
  with pytest.raises(
    FloatingPointError, match=r'Non-finite .* step [34];.*checkpoint \(step 2\)'
  ):
    train.train_and_evaluate(config, workdir)
  assert checkpoints.create_manager(workdir).all_steps() == [2]
  after, _, _ = checkpoints.restore_params(workdir, 2)
  assert_trees_close(good, after, atol=0)
