"""Every config file loads, is locked, and speaks the official code's field names."""

import glob
import importlib.util
import os
import subprocess
import sys

import pytest

CONFIGS = sorted(p for p in glob.glob('configs/*.py') if not p.endswith('__init__.py'))
CONTRACT = [
  'seed',
  'dataset',
  'data_dir',
  'preprocess',
  'load_size',
  'crop_size',
  'batch_size',
  'num_epochs',
  'num_epochs_decay',
  'num_train_steps',
  'pool_size',
  'model.netG',
  'model.ngf',
  'model.netD',
  'model.ndf',
  'model.n_layers_D',
  'model.dtype',
  'loss.gan_mode',
  'loss.lambda_A',
  'loss.lambda_B',
  'loss.lambda_identity',
  'optim.lr',
  'optim.beta1',
  'optim.beta2',
  'log_every_steps',
  'sample_every_steps',
  'checkpoint_every_steps',
  'keep_checkpoints',
]


def load(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize('path', CONFIGS)
def test_config_has_the_contract_fields_and_is_locked(path):
  config = load(path)
  for field in CONTRACT:
    target = config
    for part in field.split('.'):
      target = target[part]
  with pytest.raises(AttributeError):
    config.batch_sise = 2  # A misspelt field is an error, not a new field.
  assert 'python -m cyclegan_jax.main --config=' in open(path).read()


def test_paper_settings():
  config = load('configs/default.py')
  assert (config.load_size, config.crop_size, config.batch_size, config.pool_size) == (
    286,
    256,
    1,
    50,
  )
  assert (config.num_epochs, config.num_epochs_decay) == (100, 100)
  assert (config.optim.lr, config.optim.beta1, config.optim.beta2) == (2e-4, 0.5, 0.999)
  assert (config.loss.lambda_A, config.loss.lambda_B, config.loss.lambda_identity) == (
    10.0,
    10.0,
    0.5,
  )
  assert (config.model.netG, config.model.ngf, config.model.ndf) == (
    'resnet_9blocks',
    64,
    64,
  )
  assert load('configs/monet2photo.py').loss.lambda_identity == 0.5
  assert load('configs/maps.py').loss.lambda_identity == 0.0
  assert load('configs/demo.py').dataset.startswith('synthetic:')


def _main(*args):
  return subprocess.run(
    [sys.executable, '-m', 'cyclegan_jax.main', *args],
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
  )


@pytest.mark.slow
def test_cli_rejects_a_misspelt_override_and_a_batch_that_does_not_divide(tmp_path):
  bad_key = _main(
    '--config=configs/demo.py', f'--workdir={tmp_path}', '--config.batch_sise=4'
  )
  assert bad_key.returncode != 0 and 'batch_sise' in bad_key.stderr
  # The conftest gives this environment 4 CPU devices.
  bad_batch = _main(
    '--config=configs/demo.py', f'--workdir={tmp_path}', '--config.batch_size=6'
  )
  assert bad_batch.returncode != 0
  assert 'batch_size=6 does not divide by the 4 devices' in bad_batch.stderr
  assert not os.path.exists(os.path.join(tmp_path, 'checkpoints'))


@pytest.mark.slow
def test_cli_eval_without_checkpoint_is_one_line_error(tmp_path):
  result = _main('--config=configs/demo.py', f'--workdir={tmp_path}', '--mode=eval')
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert (
    last.startswith('eval: error: No checkpoint in') and 'Traceback' not in result.stderr
  )
