"""Nothing lost, every refusal one line: config fields, signals, damaged checkpoints,
unwritable places and output names, tried as a careless user would."""

import glob
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorstore as ts

from configs import default
from cyclegan_jax.cli import config_checks
from cyclegan_jax.cli import errors
from cyclegan_jax.deploy import inference
from cyclegan_jax.deploy import translate
from cyclegan_jax.evaluation import evaluate
from cyclegan_jax.nets import models
from cyclegan_jax.train import checkpoints
from cyclegan_jax.train import loop as train
from cyclegan_jax.train import step as step_lib
from tests import tiny_run

# --------------------------------------------------------------------------------------
# Config fields
# --------------------------------------------------------------------------------------

BAD_VALUES = [
  ('seed', -1),
  ('dataset', ''),
  ('dataset', 'synthetic:nope'),
  ('dataset', 'folder:'),
  ('data_dir', ''),
  ('preprocess', 'resize'),
  ('load_size', 0),
  ('crop_size', 0),
  ('crop_size', 8),
  ('crop_size', 300),
  ('no_flip', 1),
  ('shuffle_buffer_size', 1.5),
  ('cache', 'yes'),
  ('cache_max_gb', -1.0),
  ('cache_max_gb', float('nan')),
  ('max_image_side', 0),
  ('batch_size', 0),
  ('batch_size', True),
  ('pool_size', -3),
  ('num_epochs', -1),
  ('num_epochs_decay', -2),
  ('num_train_steps', 0),
  ('num_train_steps', -5),
  ('lr_schedule_granularity', 'batch'),
  ('model.netG', 'unet_256'),
  ('model.ngf', 0),
  ('model.netD', 'pixel'),
  ('model.ndf', -4),
  ('model.n_layers_D', 0),
  ('model.dtype', 'float16'),
  ('loss.gan_mode', 'wgangp'),
  ('loss.lambda_gan', -1.0),
  ('loss.lambda_A', -10.0),
  ('loss.lambda_B', float('inf')),
  ('loss.lambda_identity', -0.5),
  ('optim.lr', -1.0),
  ('optim.lr', 0.0),
  ('optim.beta1', 1.0),
  ('optim.beta1', -0.1),
  ('optim.beta2', 1.5),
  ('log_every_steps', 0),
  ('sample_every_steps', 0),
  ('num_sample_images', 0),
  ('checkpoint_every_steps', -1),
  ('keep_checkpoints', -1),
  ('eval.max_images', 0),
  ('eval.max_images', -2),
  ('eval.step', -2),
  ('eval.inception_weights', ''),
  ('eval.fid_reference', 'val'),
]


def with_value(field, value):
  """The default config with one field set, bypassing the locked config's type checks."""
  tree = default.get_config().to_dict()
  *parents, leaf = field.split('.')
  node = tree
  for part in parents:
    node = node[part]
  node[leaf] = value
  return ml_collections.ConfigDict(tree)


@pytest.mark.parametrize('field,value', BAD_VALUES)
def test_each_bad_value_is_refused_in_one_line_naming_the_field(field, value):
  with pytest.raises(ValueError) as raised:
    config_checks.validate(with_value(field, value))
  message = str(raised.value)
  assert message.startswith(f'config.{field}='), message
  assert repr(value) in message and '\n' not in message


def test_every_default_field_has_a_rule():
  fields = []

  def walk(tree, prefix=''):
    for key, value in tree.items():
      if isinstance(value, dict):
        walk(value, f'{prefix}{key}.')
      else:
        fields.append(f'{prefix}{key}')

  walk(default.get_config().to_dict())
  assert sorted(set(fields) - set(config_checks.RULES)) == []


def test_every_config_file_and_the_tiny_run_pass():
  for path in sorted(glob.glob('configs/*.py')):
    if not path.endswith('__init__.py'):
      module = __import__(f'configs.{os.path.basename(path)[:-3]}', fromlist=['x'])
      config_checks.validate(module.get_config())
  config_checks.validate(tiny_run.tiny_config())


def test_keep_checkpoints_zero_keeps_all(tmp_path):
  config = default.get_config()
  config.keep_checkpoints = 0
  config_checks.validate(config)
  manager = checkpoints.create_manager(str(tmp_path), keep=0)
  for step in (1, 2, 3):
    checkpoints.save(manager, step, params={'w': np.ones(3, np.float32)}, config={})
    manager.wait_until_finished()
  assert manager.all_steps() == [1, 2, 3]
  manager.close()


@pytest.mark.parametrize('num_layers', [1, 2, 3, 4])
def test_critic_size_rule_matches_the_network(num_layers):
  critic = models.PatchDiscriminator(ndf=4, num_layers=num_layers)

  def out_size(size):
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    try:
      return jax.eval_shape(critic.init_with_output, jax.random.key(0), x)[0].shape[1]
    except TypeError:  # Negative sizes inside: no output.
      return 0

  smallest = config_checks.smallest_critic_input(num_layers)
  assert out_size(smallest) >= 1 and out_size(smallest - 1) < 1
  for size in (smallest, smallest + 5, 70, 256):
    assert out_size(size) == config_checks.critic_output_size(size, num_layers)


# --------------------------------------------------------------------------------------
# File names and places
# --------------------------------------------------------------------------------------


def test_output_names_never_collide():
  paths = ['d/x.png', 'd/x.jpg', 'd/X.bmp', 'd/x_png.png', 'd/y.png']
  names = translate.output_names(paths)
  assert names['d/y.png'] == 'y.png'
  assert names['d/x.png'] == 'x_png.png' and names['d/x.jpg'] == 'x_jpg.png'
  assert len({n.lower() for n in names.values()}) == len(paths), names


def save_image(path, value=90):
  Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
  with open(path, 'rb') as f:
    return f.read()


def test_single_file_input_into_its_own_folder_keeps_the_input(tmp_path):
  source = str(tmp_path / 'photo.png')
  before = save_image(source)
  with pytest.raises(
    SystemExit,
    match=r'^translate: error: .*photo.png would replace '
    r'the input',
  ):
    translate.run(
      workdir=str(tmp_path / 'no_checkpoint'),
      input_path=source,
      output=str(tmp_path),
      progress=False,
    )
  with open(source, 'rb') as f:
    assert f.read() == before


def test_existing_outputs_are_not_written_over(tmp_path):
  (tmp_path / 'in').mkdir()
  (tmp_path / 'out').mkdir()
  save_image(str(tmp_path / 'in' / 'a.jpg'))
  theirs = save_image(str(tmp_path / 'out' / 'a.png'), value=7)
  with pytest.raises(SystemExit, match='already exist.*--overwrite'):
    translate.run(
      workdir=str(tmp_path / 'w'),
      input_path=str(tmp_path / 'in'),
      output=str(tmp_path / 'out'),
      progress=False,
    )
  with open(tmp_path / 'out' / 'a.png', 'rb') as f:
    assert f.read() == theirs
  # --overwrite may replace it, never an input.
  translate.check_outputs(
    [str(tmp_path / 'in' / 'a.jpg')],
    {str(tmp_path / 'in' / 'a.jpg'): 'a.png'},
    str(tmp_path / 'out'),
    overwrite=True,
  )
  with pytest.raises(ValueError, match='would replace the input'):
    translate.check_outputs(
      [str(tmp_path / 'in' / 'a.jpg')],
      {str(tmp_path / 'in' / 'a.jpg'): 'a.jpg'},
      str(tmp_path / 'in'),
      overwrite=True,
    )


def test_output_that_is_a_file_is_one_line(tmp_path):
  source = str(tmp_path / 'photo.png')
  save_image(source)
  (tmp_path / 'taken').write_text('mine')
  with pytest.raises(SystemExit, match=r'^translate: error: --output .*taken is a file'):
    translate.run(
      workdir=str(tmp_path / 'w'),
      input_path=source,
      output=str(tmp_path / 'taken'),
      progress=False,
    )
  assert (tmp_path / 'taken').read_text() == 'mine'


def test_unwritable_folders_are_one_line(tmp_path):
  a_file = tmp_path / 'file'
  a_file.write_text('x')
  with pytest.raises(ValueError, match='is a file, not a folder'):
    errors.check_writable_folder(str(a_file), '--workdir')
  with pytest.raises(ValueError, match=r'cannot be created: .*file is a file'):
    errors.check_writable_folder(str(a_file / 'below' / 'deeper'), '--workdir')
  assert a_file.read_text() == 'x'


def test_read_only_filesystem_is_one_line():
  # Tests run as root, whom chmod does not stop; a read-only mount does.
  place = next((p for p in ('/proc/sys', '/sys/fs', '/sys') if os.path.isdir(p)), None)
  if place is None:
    pytest.skip('no read-only file system (/proc, /sys) on this machine')
  try:
    errors.check_writable_folder(os.path.join(place, 'cyclegan_test'), '--workdir')
  except ValueError as e:
    assert 'not writable' in str(e) and '\n' not in str(e)
  else:
    os.rmdir(os.path.join(place, 'cyclegan_test'))
    pytest.skip(f'{place} is writable here')


def test_os_errors_are_described_in_one_line():
  error = PermissionError(13, 'Permission denied', '/data/out')
  assert errors.describe(error) == 'Permission denied: /data/out'
  with pytest.raises(SystemExit, match=r'^convert: error: Read-only file system: /x$'):
    with errors.one_line('convert'):
      raise OSError(30, 'Read-only file system', '/x')


# --------------------------------------------------------------------------------------
# Damaged checkpoints
# --------------------------------------------------------------------------------------


def copy_of_tiny_run(tmp_path, trained_workdir, second_step=None):
  """A copy of the tiny workdir (step 2); with `second_step`, step 2 also as that step."""
  workdir = str(tmp_path / 'work')
  shutil.copytree(trained_workdir, workdir)
  if second_step is not None:
    root = os.path.join(workdir, 'checkpoints')
    shutil.copytree(os.path.join(root, '2'), os.path.join(root, str(second_step)))
  return workdir


def array_chunks(item_dir):
  """[(network, data file, offset, length)] of every stored chunk of an OCDBT item."""
  base = ts.KvStore.open({'driver': 'file', 'path': item_dir + '/'}).result()
  manifest = ts.ocdbt.dump(base).result()
  root = manifest['versions'][-1]['root']['location']
  node = ts.ocdbt.dump(base, root).result()
  assert node['height'] == 0, 'a tiny item fits one B-tree leaf'
  chunks = []
  for entry in node['entries']:
    if 'indirect_value' in entry:
      _, prefix, data_file, offset, length = entry['indirect_value'].split(':')
      chunks.append(
        (
          entry['key'].decode().split('.')[0],
          os.path.join(item_dir, prefix, data_file),
          int(offset),
          int(length),
        )
      )
  return chunks


def garble(item_dir, networks):
  """Overwrites every stored chunk of `networks` with bytes that do not decode."""
  hit = 0
  for network, path, offset, length in array_chunks(item_dir):
    if network in networks:
      with open(path, 'r+b') as f:
        f.seek(offset)
        f.write(b'\x00' * length)
      hit += 1
  assert hit


def test_translate_a_to_b_reads_only_g_a(tmp_path, trained_workdir):
  workdir = copy_of_tiny_run(tmp_path, trained_workdir)
  garble(os.path.join(workdir, 'checkpoints', '2', 'params'), {'G_B', 'D_B'})
  restored = inference.restore(workdir, generators=('G_A',))
  assert set(restored.params) == {'G_A'}
  source = str(tmp_path / 'photo.png')
  save_image(source)
  written = translate.run(
    workdir=workdir,
    input_path=source,
    output=str(tmp_path / 'o'),
    direction='AtoB',
    progress=False,
  )
  assert [os.path.basename(p) for p in written] == ['photo.png']
  with pytest.raises(
    SystemExit,
    match=r'^translate: error: Checkpoint step 2 .* is '
    r'damaged .*no other step is intact\.$',
  ):
    translate.run(
      workdir=workdir,
      input_path=source,
      output=str(tmp_path / 'o2'),
      direction='BtoA',
      progress=False,
    )


def test_eval_names_the_intact_steps(tmp_path, trained_workdir):
  workdir = copy_of_tiny_run(tmp_path, trained_workdir, second_step=4)
  garble(os.path.join(workdir, 'checkpoints', '4', 'params'), {'G_B'})
  with pytest.raises(
    checkpoints.DamagedCheckpointError,
    match=r'step 4 .*damaged .*intact steps \(for G_A, G_B\): 2; pass '
    r'--config\.eval\.step=2\.$',
  ):
    evaluate.evaluate(tiny_run.tiny_config(), workdir)


def resume_state(config):
  """A fresh train state for `config` on the 4 test devices, as training builds it."""
  mesh = jax.make_mesh((jax.device_count(),), (step_lib.AXIS,))
  networks = step_lib.create_networks(config, epoch_length=600)
  return step_lib.create_train_state(
    networks,
    seed=config.seed,
    mesh=mesh,
    image_shape=(config.crop_size, config.crop_size, 3),
    pool_size=config.pool_size,
  )


@pytest.mark.parametrize('damage', ['truncate', 'delete'])
def test_resume_falls_back_to_the_newest_intact_step(tmp_path, damage, trained_workdir):
  workdir = copy_of_tiny_run(tmp_path, trained_workdir, second_step=4)
  data = max(
    glob.glob(os.path.join(workdir, 'checkpoints', '4', 'params', 'ocdbt.*', 'd', '*')),
    key=os.path.getsize,
  )
  if damage == 'truncate':
    with open(data, 'r+b') as f:
      f.truncate(os.path.getsize(data) // 3)
  else:
    os.remove(data)
  config = tiny_run.tiny_config()
  manager = checkpoints.create_manager(workdir, keep=config.keep_checkpoints)
  state, step, manager = train.resume(manager, resume_state(config), config, workdir)
  assert step == 2 and int(jax.device_get(state.step)) == 2
  assert manager.all_steps() == [2]
  manager.close()
  # Set aside, not deleted.
  assert os.path.isdir(os.path.join(workdir, train.DAMAGED_DIR, '4', 'params'))


def test_resume_with_other_network_sizes_names_the_field(tmp_path, trained_workdir):
  workdir = copy_of_tiny_run(tmp_path, trained_workdir)
  config = tiny_run.tiny_config()
  config.model.ngf = 8
  manager = checkpoints.create_manager(workdir, keep=config.keep_checkpoints)
  with pytest.raises(
    train.NetworkMismatchError,
    match=r'^model\.ngf: the command line says 8 but the checkpoint .*'
    r'trained with 4;',
  ):
    train.resume(manager, resume_state(config), config, workdir)
  manager.close()
  assert checkpoints.create_manager(workdir).all_steps() == [2]  # Nothing moved.


def test_eval_again_replaces_the_step_outputs_as_a_whole(tmp_path, trained_workdir):
  workdir = copy_of_tiny_run(tmp_path, trained_workdir)
  config = tiny_run.tiny_config()
  config.eval.max_images = 2
  evaluate.evaluate(config, workdir)
  step_dir = os.path.join(workdir, 'eval', 'step_2')
  stale = os.path.join(step_dir, 'images', 'AtoB', 'from_an_older_run_fake.png')
  save_image(stale)
  evaluate.evaluate(config, workdir)
  assert not os.path.exists(stale)
  assert len(os.listdir(os.path.join(step_dir, 'images', 'AtoB'))) == 2 * 4
  assert sorted(os.listdir(os.path.join(workdir, 'eval'))) == [
    n for n in sorted(os.listdir(os.path.join(workdir, 'eval'))) if not n.startswith('.')
  ]  # No partial folder left behind.


def test_eval_folder_that_is_a_file_is_one_line(tmp_path, trained_workdir):
  workdir = copy_of_tiny_run(tmp_path, trained_workdir)
  shutil.rmtree(os.path.join(workdir, 'eval'), ignore_errors=True)  # Another test's.
  with open(os.path.join(workdir, 'eval'), 'w') as f:
    f.write('not a folder')
  with pytest.raises(ValueError, match='evaluation folder .*is a file'):
    evaluate.evaluate(tiny_run.tiny_config(), workdir)


# --------------------------------------------------------------------------------------
# Signals
# --------------------------------------------------------------------------------------


def test_second_signal_exits_at_once(monkeypatch):
  exits = []
  monkeypatch.setattr(train.os, '_exit', exits.append)
  preemption = train._Preemption()  # pylint: disable=protected-access
  preemption._handler(signal.SIGINT, None)  # pylint: disable=protected-access
  assert preemption.requested and preemption.signal_name == 'SIGINT' and not exits
  preemption._handler(signal.SIGTERM, None)  # pylint: disable=protected-access
  assert not exits  # A repeated SIGTERM lets the save finish.
  preemption._handler(signal.SIGINT, None)  # pylint: disable=protected-access
  assert exits == [128 + signal.SIGINT]


@pytest.mark.slow
def test_ctrl_c_saves_and_the_next_run_resumes(tmp_path):
  config = tiny_run.tiny_config()
  config.num_train_steps = 10_000
  config.checkpoint_every_steps = 10_000
  config.sample_every_steps = 10_000
  config.log_every_steps = 50
  workdir = str(tmp_path)
  sent = []

  def interrupt_when_training():
    deadline = time.time() + 300
    while time.time() < deadline and not glob.glob(os.path.join(workdir, 'events.*')):
      time.sleep(0.2)
    time.sleep(1.0)
    sent.append(time.time())
    os.kill(os.getpid(), signal.SIGINT)

  threading.Thread(target=interrupt_when_training, daemon=True).start()
  state = train.train_and_evaluate(config, workdir)
  assert sent, 'the run ended before the signal was sent'
  stopped = int(jax.device_get(state.step))
  assert 0 < stopped < 10_000
  assert checkpoints.create_manager(workdir).latest_step() == stopped
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

  config.num_train_steps = stopped + 1
  resumed = train.train_and_evaluate(config, workdir)
  assert int(jax.device_get(resumed.step)) == stopped + 1


# --------------------------------------------------------------------------------------
# The command lines
# --------------------------------------------------------------------------------------


def cli(*args, timeout=300):
  return subprocess.run(
    [sys.executable, '-m', *args],
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


@pytest.mark.slow
@pytest.mark.parametrize(
  'override,field',
  [
    ('--config.crop_size=8', 'crop_size'),
    ('--config.pool_size=-3', 'pool_size'),
    ('--config.optim.lr=-1', 'optim.lr'),
    ('--config.keep_checkpoints=-1', 'keep_checkpoints'),
  ],
)
def test_main_refuses_bad_values_in_one_line(tmp_path, override, field):
  result = cli(
    'cyclegan_jax.main',
    '--config=configs/demo.py',
    f'--workdir={tmp_path / "w"}',
    override,
  )
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert (
    last.startswith(f'train: error: config.{field}=') and 'Traceback' not in result.stderr
  )
  assert not os.path.exists(tmp_path / 'w')  # Refused before anything was written.


@pytest.mark.slow
def test_main_workdir_under_a_file_is_one_line(tmp_path):
  (tmp_path / 'file').write_text('x')
  result = cli(
    'cyclegan_jax.main',
    '--config=configs/demo.py',
    f'--workdir={tmp_path / "file" / "run"}',
  )
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith('train: error: --workdir ')
