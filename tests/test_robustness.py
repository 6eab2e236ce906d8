"""Nothing lost, every refusal one line: config fields, signals, damaged checkpoints,
unwritable places, output names, a shared workdir, a full disk, small test splits and
broken links, tried as a careless user would."""

import errno
import glob
import logging as logging_std
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image
import pytest
import tensorstore as ts

from configs import default
from cyclegan_jax.cli import app
from cyclegan_jax.cli import config_checks
from cyclegan_jax.cli import console
from cyclegan_jax.cli import errors
from cyclegan_jax.data import input_pipeline
from cyclegan_jax.deploy import inference
from cyclegan_jax.deploy import translate
from cyclegan_jax.evaluation import evaluate
from cyclegan_jax.nets import models
from cyclegan_jax.train import checkpoints
from cyclegan_jax.train import loop as train
from cyclegan_jax.train import step as step_lib
from cyclegan_jax.train import workdir_lock
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
  ('model.netG', 'unet_64'),
  ('model.ngf', 0),
  ('model.netD', 'pixelgan'),
  ('model.norm', 'group'),
  ('model.use_dropout', 0.5),
  ('dataset_mode', 'paired'),
  ('direction', 'AtoA'),
  ('loss.lambda_L1', -100.0),
  ('eval.model_eval', 'yes'),
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
  ('eval.split', 'train'),
  ('eval.split', 'val'),  # The default dataset is a TFDS set: it has no valA/valB.
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


# A value the removed field or option could have had in an old config or command.
REMOVED_OPTIONS = [
  (field, 2 if gone is None else gone) for field, gone in config_checks.REMOVED
]


@pytest.mark.parametrize('field,value', REMOVED_OPTIONS)
def test_each_removed_option_is_refused_in_one_line_saying_what_to_use(field, value):
  with pytest.raises(ValueError) as raised:
    config_checks.validate(with_value(field, value))
  message = str(raised.value)
  assert message.startswith(f'config.{field}={value!r} was removed: '), message
  assert '\n' not in message


def test_a_removed_field_on_the_command_line_is_one_usage_line(capsys):
  argv = ['prog', '--config.loss.swd_levels=2']
  with pytest.raises(SystemExit) as e:
    app.parse_flags('train', argv, flags.FlagValues())
  assert e.value.code == app.EXIT_USAGE
  err = capsys.readouterr().err
  assert err.startswith('train: error: --config.loss.swd_levels was removed: ')
  assert err.count('\n') == 1
  assert config_checks.removed_flag(['--config.loss.lambda_swd=2']) is None


def test_a_checkpoint_of_a_removed_head_is_refused_in_one_line():
  saved = {'model': {'netG': 'resnet_6blocks', 'ngf': 4, 'head': 'residual'}}
  with pytest.raises(inference.ArchitectureMismatchError) as raised:
    inference.model_config_for(saved, where='/tmp/old/checkpoints/3')
  message = str(raised.value)
  assert "head='residual', which was removed (use 'curve'" in message
  assert '\n' not in message
  # The removed loss fields of old runs change no weights: those restore as before.
  old = {**default.get_config().to_dict(), 'loss': {'swd_levels': 1}}
  assert inference.model_config_for(old).head == 'tanh'


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

  # Whatever it was (a shell's background job starts with SIGINT ignored), it comes back.
  handler_before = signal.getsignal(signal.SIGINT)
  threading.Thread(target=interrupt_when_training, daemon=True).start()
  state = train.train_and_evaluate(config, workdir)
  assert sent, 'the run ended before the signal was sent'
  stopped = int(jax.device_get(state.step))
  assert 0 < stopped < 10_000
  assert checkpoints.create_manager(workdir).latest_step() == stopped
  assert signal.getsignal(signal.SIGINT) is handler_before

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


# --------------------------------------------------------------------------------------
# One run per workdir
# --------------------------------------------------------------------------------------

HOST = workdir_lock.this_process('training').host


def write_lock(folder, holder, age_s=0.0, name=workdir_lock.LOCK_NAME):
  """A lock file as `holder` would have left it, its heartbeat `age_s` seconds old."""
  path = os.path.join(folder, name)
  with open(path, 'w', encoding='utf-8') as f:
    f.write(holder.to_json())
  beat = time.time() - age_s
  os.utime(path, (beat, beat))
  return path


def dead_pid():
  child = subprocess.Popen([sys.executable, '-c', 'pass'])
  child.wait()
  return child.pid


def holder(host=HOST, pid=None, started=1.8e9):
  return workdir_lock.Holder(host, os.getpid() if pid is None else pid, started, 'x')


@pytest.mark.parametrize(
  'host,alive,age,stale',
  [
    (HOST, True, 1.0, False),  # A live run of this host.
    (HOST, False, 1.0, True),  # kill -9 on this host: its pid is gone.
    ('other-host', False, 1.0, False),  # Another host's pid cannot be checked here.
    ('other-host', True, 301.0, True),  # A crashed host: its heartbeat stopped.
    (HOST, True, 301.0, True),  # Suspended past the timeout (or a reused pid).
  ],
)
def test_stale_lock_rules(host, alive, age, stale):
  assert (
    workdir_lock.is_stale(
      holder(host=host), age, host=HOST, alive=lambda pid: alive, stale_after_s=300.0
    )
    == stale
  )
  # An unreadable lock file: only its age tells.
  assert workdir_lock.is_stale(None, age, host=HOST) == (age > 300.0)


def test_second_holder_is_refused_naming_the_first(tmp_path):
  with workdir_lock.hold(str(tmp_path), 'training'):
    with pytest.raises(
      workdir_lock.WorkdirInUseError,
      match=rf'^--workdir {tmp_path} is in use by a training on host {HOST}, pid '
      rf'{os.getpid()}, started 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC \(heartbeat 0 s ago\)',
    ):
      workdir_lock.acquire(str(tmp_path), 'training')
  assert not os.path.exists(tmp_path / workdir_lock.LOCK_NAME)  # Released.


@pytest.mark.parametrize(
  'lock', [dict(pid='dead', age=0.0), dict(host='crashed-host', pid=1, age=400.0)]
)
def test_a_dead_holder_s_lock_is_taken_over_with_a_warning(tmp_path, caplog, lock):
  pid = dead_pid() if lock['pid'] == 'dead' else lock['pid']
  write_lock(str(tmp_path), holder(host=lock.get('host', HOST), pid=pid), lock['age'])
  with caplog.at_level('WARNING'):
    with workdir_lock.hold(str(tmp_path), 'training'):
      assert workdir_lock.owner(str(tmp_path)).pid == os.getpid()
  assert f'Taking over the lock of {tmp_path}' in caplog.text
  assert f'pid {pid}' in caplog.text


def test_another_host_s_live_lock_is_respected(tmp_path):
  write_lock(str(tmp_path), holder(host='other-host', pid=1), age_s=30.0)
  with pytest.raises(workdir_lock.WorkdirInUseError, match='on host other-host, pid 1,'):
    workdir_lock.acquire(str(tmp_path), 'training')


def test_heartbeat_refreshes_and_a_lost_lock_stops_the_holder(tmp_path):
  folder = str(tmp_path)
  path = os.path.join(folder, workdir_lock.LOCK_NAME)
  with workdir_lock.hold(folder, 'training', heartbeat_s=0.05):
    os.utime(path, (time.time() - 100, time.time() - 100))
    time.sleep(0.5)
    assert time.time() - os.stat(path).st_mtime < 5  # The heartbeat came back.
    workdir_lock.check(folder)  # Still ours.
    write_lock(folder, holder(host='other-host', pid=7))  # Taken over meanwhile.
    with pytest.raises(workdir_lock.LockLostError, match='now held by a training on '):
      workdir_lock.check(folder)
  assert workdir_lock.owner(folder).host == 'other-host'  # Not ours to remove.


def test_a_second_evaluation_is_refused_but_not_one_beside_a_training(tmp_path):
  workdir = str(tmp_path)
  with workdir_lock.hold(workdir, 'training'):
    # Past the lock: it fails for want of a checkpoint.
    with pytest.raises(FileNotFoundError, match='No checkpoint'):
      evaluate.evaluate(tiny_run.tiny_config(), workdir)
    with workdir_lock.hold(workdir, 'evaluation', name=workdir_lock.EVAL_LOCK_NAME):
      with pytest.raises(workdir_lock.WorkdirInUseError, match='in use by an evaluation'):
        evaluate.evaluate(tiny_run.tiny_config(), workdir)


@pytest.mark.slow
def test_a_second_training_on_a_locked_workdir_is_refused_in_one_line(tmp_path):
  workdir = str(tmp_path / 'w')
  os.makedirs(workdir)
  with workdir_lock.hold(workdir, 'training'):
    result = cli('cyclegan_jax.main', '--config=configs/tiny.py', f'--workdir={workdir}')
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(
    f'train: error: --workdir {workdir} is in use by a training on host '
  )
  assert f'pid {os.getpid()}, started ' in last
  assert not os.path.exists(os.path.join(workdir, 'checkpoints'))  # Nothing written.


# --------------------------------------------------------------------------------------
# Saves reported when they are true
# --------------------------------------------------------------------------------------


class _DiskFull:
  """A commit future of a write that hits a full disk, as Orbax's background thread sees."""

  def __init__(self):
    self.reported = threading.Event()

  def result(self, timeout=None):
    del timeout
    time.sleep(0.2)  # The training goes on meanwhile, as with a real disk.
    self.reported.set()
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), '/work/checkpoints/4')


class _LateWrite:
  """Another item's writer, still running when the failure above is reported."""

  def __init__(self, directory, failure: _DiskFull):
    def write():
      failure.reported.wait()
      time.sleep(2.0)  # Past the moment the next run clears unfinished saves.
      os.makedirs(directory, exist_ok=True)
      with open(os.path.join(directory, 'late'), 'w') as f:
        f.write('late')

    self.thread = threading.Thread(target=write, daemon=True)
    self.thread.start()

  def result(self, timeout=None):
    self.thread.join(timeout)


def fail_saves_from(monkeypatch, first_failing_step):
  """Makes every save from `first_failing_step` on fail in the background (ENOSPC)."""
  failing = []
  real_save, real_async_save = checkpoints.save, ocp.StandardCheckpointHandler.async_save

  def save(manager, step, **kwargs):
    if step >= first_failing_step:
      failing.append(step)
    return real_save(manager, step, **kwargs)

  async def async_save(self, directory, *args, **kwargs):
    futures = list(await real_async_save(self, directory, *args, **kwargs) or [])
    # Orbax stops at the first failed future, so the late writer is never awaited.
    if not failing:
      return futures
    failure = _DiskFull()
    return futures + [failure, _LateWrite(directory, failure)]

  monkeypatch.setattr(checkpoints, 'save', save)
  monkeypatch.setattr(ocp.StandardCheckpointHandler, 'async_save', async_save)


@pytest.mark.slow
def test_a_failed_save_ends_in_one_line_and_the_run_resumes(
  tmp_path, monkeypatch, caplog
):
  config = tiny_run.tiny_config()
  config.num_train_steps = 6
  workdir = str(tmp_path)
  fail_saves_from(monkeypatch, 4)
  with (
    caplog.at_level('INFO', logger='absl'),
    pytest.raises(checkpoints.CheckpointSaveError) as e,
  ):
    train.train_and_evaluate(config, workdir)
  assert re.fullmatch(
    rf'Saving checkpoint 4 in {tmp_path}/checkpoints failed: No space left on device '
    r'\(writing /work/checkpoints/4\); training stopped and the newest intact '
    r'checkpoint is step 2\. Free space .* run the same command to resume\.',
    str(e.value),
  )
  assert 'Checkpoint 2 saved.' in caplog.text
  assert 'Checkpoint 4 saved.' not in caplog.text  # Never claimed.
  assert checkpoints.create_manager(workdir).all_steps() == [2]
  assert not os.path.exists(os.path.join(workdir, workdir_lock.LOCK_NAME))  # Released.

  # Space freed: the same command resumes from step 2 and clears the unfinished save.
  monkeypatch.undo()
  unfinished = os.path.join(workdir, 'checkpoints', '4.orbax-checkpoint-tmp-123')
  os.makedirs(unfinished, exist_ok=True)  # As a kill during the save leaves it.
  caplog.clear()
  with caplog.at_level('INFO', logger='absl'):
    state = train.train_and_evaluate(config, workdir)
  assert f'Removed {unfinished}, left by a save that never finished.' in caplog.text
  assert 'Resuming from checkpoint 2' in caplog.text
  assert int(jax.device_get(state.step)) == 6
  assert checkpoints.create_manager(workdir).all_steps() == [2, 4, 6]
  assert not glob.glob(os.path.join(workdir, 'checkpoints', '*tmp*'))
  # The failed save's last writer finished before the lock was released.
  assert not glob.glob(os.path.join(workdir, '**', 'late'), recursive=True)


def test_library_tracebacks_are_hidden_at_default_verbosity(monkeypatch):
  record = logging_std.LogRecord(
    'absl',
    logging_std.ERROR,
    '/site-packages/orbax/checkpoint/_src/checkpointers/async_checkpointer.py',
    1,
    'Failed to run 6 Handler Commit operations',
    None,
    (OSError, OSError(errno.ENOSPC, 'No space left on device'), None),
  )
  assert console.OwnInfoOnly().filter(record)  # The message stays...
  assert record.exc_info is None  # ... its traceback goes (--verbosity=1 keeps it).
  # TensorStore's callbacks into the closed event loop of the abandoned save.
  printed = []
  hook = console._quiet_excepthook(lambda *a: printed.append(a[1]))  # pylint: disable=protected-access
  hook(RuntimeError, RuntimeError('Event loop is closed'), None)
  assert not printed
  hook(KeyError, KeyError('x'), None)
  assert len(printed) == 1


def test_unfinished_saves_are_removed_and_checkpoints_kept(tmp_path):
  root = tmp_path / 'checkpoints'
  for name in ('2', '4.orbax-checkpoint-tmp', '6.orbax-checkpoint-tmp-1796476265'):
    (root / name).mkdir(parents=True)
  removed = checkpoints.remove_unfinished(str(tmp_path))
  assert [os.path.basename(p) for p in removed] == [
    '4.orbax-checkpoint-tmp',
    '6.orbax-checkpoint-tmp-1796476265',
  ]
  assert os.listdir(root) == ['2']


def test_write_failures_name_the_cause_and_the_newest_checkpoint(tmp_path):
  workdir = str(tmp_path)
  os.makedirs(os.path.join(workdir, 'checkpoints', '2'))
  os.makedirs(os.path.join(workdir, 'checkpoints', '4.orbax-checkpoint-tmp'))
  tensorstore_text = (
    'OUT_OF_RANGE: Error writing "D_A.bias/0" in OCDBT database: Failed writing: '
    f'"{workdir}/checkpoints/4.orbax-checkpoint-tmp/state/manifest.ocdbt.__lock": '
    "Failed to write 330 bytes to file 5: No space left on device [os_error_code='28']"
  )
  assert checkpoints.save_failure_reason(ValueError(tensorstore_text)) == (
    f'No space left on device (writing {workdir}/checkpoints/4.orbax-checkpoint-tmp/'
    'state/manifest.ocdbt)'
  )
  # The event file's writer fails first: the same one line.
  flush = RuntimeError(
    f'Failed to flush 2 events to {workdir}/events.out.tfevents.1; Disk quota exceeded'
  )
  assert str(checkpoints.write_failure(flush, workdir)) == (
    f'Writing in {workdir} failed: Disk quota exceeded (writing '
    f'{workdir}/events.out.tfevents.1); training stopped and the newest intact '
    'checkpoint is step 2. Free space (or fix the permission) and run the same command '
    'to resume.'
  )
  assert checkpoints.write_failure(KeyError('a bug'), workdir) is None


@pytest.mark.slow
def test_a_full_disk_is_one_line_on_the_console(tmp_path):
  workdir = str(tmp_path / 'w')
  result = cli(
    'tests.full_disk_main',
    '--full_from_step=4',
    '--config=configs/tiny.py',
    '--config.num_train_steps=6',
    f'--workdir={workdir}',
  )
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr
  assert lines[-1].startswith(f'train: error: Writing in {workdir} failed: ') or lines[
    -1
  ].startswith(f'train: error: Saving checkpoint 4 in {workdir}/checkpoints failed: ')
  assert 'File too large' in lines[-1]
  assert lines[-1].endswith(
    'the newest intact checkpoint is step 2. Free space (or fix '
    'the permission) and run the same command to resume.'
  )
  assert 'Checkpoint 4 saved.' not in result.stderr
  assert len(lines) < 25  # Was 3,000 lines of library tracebacks.
  assert checkpoints.create_manager(workdir).all_steps() == [2]


# --------------------------------------------------------------------------------------
# Sample grids for any test split; links like any unreadable file
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize('count_a,count_b', [(2, 3), (1, 0), (0, 1), (1, 1)])
def test_sample_grid_shows_what_each_test_split_has(count_a, count_b):
  tile = 8
  images = {}
  for domain, n, other in (('A', count_a, 'B'), ('B', count_b, 'A')):
    images[f'real_{domain}'] = np.full((n, tile, tile, 3), 1.0, np.float32)  # White.
    images[f'fake_{other}'] = np.zeros((n, tile, tile, 3), np.float32)
    images[f'rec_{domain}'] = np.zeros((n, tile, tile, 3), np.float32)
  grid = train.sample_grid(images)
  rows = max(count_a, count_b)
  assert grid.shape == (rows * tile, 6 * tile, 3)
  # Column 0 holds A's images, column 3 B's; the rest of a column is black.
  for column, n in ((0, count_a), (3, count_b)):
    cells = grid[:, column * tile : (column + 1) * tile]
    assert (cells[: n * tile] == 1.0).all() and (cells[n * tile :] == 0.0).all()


def folder_dataset(root, counts, links=()):
  """root/{trainA,...}/ with counts[split] 24 px images, and `links` (split, kind)."""
  for split, n in counts.items():
    os.makedirs(root / split, exist_ok=True)
    for i in range(n):
      save_image(str(root / split / f'{i}.png'), value=40 * i)
  for split, kind in links:
    link = root / split / f'{kind}.png'
    if kind == 'dangling':
      os.symlink(root / 'nowhere.png', link)
    else:
      os.symlink(link, link)  # Loops on itself.
  config = tiny_run.tiny_config()
  config.dataset = f'folder:{root}'
  return config


def test_sample_images_of_small_unequal_or_empty_test_splits(tmp_path, caplog):
  config = folder_dataset(tmp_path, {'trainA': 2, 'trainB': 2, 'testA': 1, 'testB': 0})
  config.num_sample_images = 4
  with caplog.at_level('INFO', logger='absl'):
    real_a = input_pipeline.sample_images(config, 'A', 4)
    real_b = input_pipeline.sample_images(config, 'B', 4)
  assert real_a.shape == (1, 16, 16, 3) and real_b.shape == (0, 16, 16, 3)
  assert 'Sample grids show 1 testA image(s) (num_sample_images=4).' in caplog.text
  assert f'Sample grids show no testB images: No images in {tmp_path}/testB' in (
    caplog.text
  )


def test_dangling_and_looping_links_are_skipped_and_named(tmp_path, caplog):
  config = folder_dataset(
    tmp_path,
    {'trainA': 2, 'trainB': 1, 'testA': 1, 'testB': 1},
    links=[('trainA', 'dangling'), ('trainA', 'looping'), ('trainB', 'dangling')],
  )
  with caplog.at_level('WARNING'):
    info = input_pipeline.dataset_info(config)
  assert (info.num_a, info.num_b) == (2, 1)
  for name in ('trainA/dangling.png', 'trainA/looping.png', 'trainB/dangling.png'):
    assert f'Skipping unreadable image {tmp_path}/{name} (a dangling or looping ' in (
      caplog.text
    )
  # A domain left with links only is one line.
  os.remove(tmp_path / 'trainB' / '0.png')
  with pytest.raises(
    ValueError, match=rf'^Every one of the 1 files in {tmp_path}/trainB is unreadable'
  ):
    input_pipeline.dataset_info(config)


@pytest.mark.slow
def test_training_with_links_and_unequal_small_test_splits(tmp_path):
  config = folder_dataset(
    tmp_path / 'data',
    {'trainA': 2, 'trainB': 2, 'testA': 2, 'testB': 3},
    links=[('trainA', 'dangling'), ('trainA', 'looping'), ('testB', 'dangling')],
  )
  config.num_sample_images = 4
  workdir = str(tmp_path / 'w')
  state = train.train_and_evaluate(config, workdir)
  assert int(jax.device_get(state.step)) == 2
  with Image.open(os.path.join(workdir, 'samples', 'step_2.png')) as grid:
    assert grid.size == (6 * 16, 3 * 16)  # 3 rows: testB's; testA's third is black.


def test_eval_skips_a_domain_without_test_images(tmp_path, trained_workdir, caplog):
  workdir = copy_of_tiny_run(tmp_path, trained_workdir)
  config = folder_dataset(tmp_path / 'data', {'testA': 1, 'testB': 0})
  with caplog.at_level('WARNING'):
    summary = evaluate.evaluate(config, workdir)
  assert set(summary) == {'AtoB/cycle_l1'}
  assert f'Skipping BtoA: No images in {tmp_path}/data/testB' in caplog.text
  shutil.rmtree(tmp_path / 'data' / 'testA')
  with pytest.raises(ValueError, match=r'^Nothing to evaluate: Dataset folder .*testA/'):
    evaluate.evaluate(config, workdir)
