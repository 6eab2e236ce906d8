"""What the command-line tools print: our progress and warnings, no library chatter."""

import io
import json
import logging
import os
import subprocess
import sys

import pytest

from cyclegan_jax.cli import console
from cyclegan_jax.train import loop as train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(pathname: str, level: int) -> logging.LogRecord:
  return logging.LogRecord('absl', level, pathname, 1, 'message', None, None)


def test_filter_keeps_own_info_and_everyone_s_warnings():
  keep = console.OwnInfoOnly()
  own = os.path.join(REPO, 'cyclegan_jax', 'train', 'loop.py')
  library = '/site-packages/orbax/checkpoint/_src/checkpoint_manager.py'
  assert keep.filter(_record(own, logging.INFO))
  assert not keep.filter(_record(library, logging.INFO))
  assert keep.filter(_record(library, logging.WARNING))
  assert keep.filter(_record(library, logging.ERROR))


@pytest.mark.parametrize(
  'argv, verbose',
  [
    ([], False),
    (['--verbosity=1'], True),
    (['--verbosity', '2'], True),
    (['-v', '1'], True),
    (['--v=0'], False),
    (['--verbosity=-1'], False),
    (['--verbosity=x'], False),
  ],
)
def test_verbosity_is_read_from_the_command_line(argv, verbose):
  assert console.verbose_argv(['prog', *argv]) == verbose


def test_progress_line_names_rate_eta_and_the_main_losses(monkeypatch):
  clock = iter([100.0, 130.0, 140.0])
  monkeypatch.setattr(train.time, 'monotonic', lambda: next(clock))
  progress = train._Progress(0, 1000)  # pylint: disable=protected-access
  first = progress.line(100, {'loss_G': 3.14159, 'loss_D_A': 0.25, 'D_A_real': 0.5})
  assert first == 'step  100/1000  30s incl. compilation  loss_G 3.142  loss_D_A 0.250'
  second = progress.line(200, {'loss_G': 2.0})
  assert second == 'step  200/1000  10.00 steps/s  ETA 1m20s  loss_G 2.000'


@pytest.mark.slow
def test_training_console_is_setup_progress_checkpoints_and_where_outputs_are(tmp_path):
  workdir = str(tmp_path / 'run')
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'cyclegan_jax.main',
      '--config=configs/tiny.py',
      f'--workdir={workdir}',
      '--config.num_train_steps=4',
      '--config.checkpoint_every_steps=2',
      '--config.log_every_steps=2',
      '--json',
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  lines = (result.stdout + result.stderr).splitlines()
  chatter = [
    line
    for line in lines
    if any(
      s in line
      for s in (
        'orbax',
        'checkpoint_manager',
        'port.cc',
        'InitializeLog',
        'xla_bridge',
        'logging_writer',
        'Setting work unit',
      )
    )
  ]
  assert not chatter, chatter
  text = '\n'.join(lines)
  for expected in (
    'on 4 CPU device',
    'Config configs/tiny.py',
    'Data:',
    'step 2/4',
    'step 4/4',
    'steps/s',
    'Checkpoint 2 saved.',
    'Checkpoint 4 saved.',
    f'Checkpoints: {workdir}/checkpoints',
    f'sample grids: {workdir}/samples',
  ):
    assert expected in text, (expected, text)
  assert len(lines) <= 14, text
  # It ends with one human line and the JSON line of the result on stdout.
  human, last = result.stdout.strip().splitlines()[-2:]
  assert human == f'Trained to step 4: checkpoints in {workdir}/checkpoints.'
  assert json.loads(last) == {
    'command': 'train',
    'workdir': workdir,
    'step': 4,
    'finished': True,
  }
  assert os.path.exists(os.path.join(workdir, 'samples', 'step_4.png'))


def test_progress_bar_draws_counts_and_ends_its_line():
  stream = io.StringIO()
  bar = console.ProgressBar(3, 'testA', stream=stream)
  bar.advance(2)
  bar.advance()
  bar.close()
  text = stream.getvalue()
  assert text.startswith('\rtestA [') and text.endswith('\n')
  assert '3/3 images' in text and 'img/s' in text
  quiet = io.StringIO()
  off = console.ProgressBar(3, stream=quiet, enabled=False)
  off.advance(3)
  off.close()
  assert quiet.getvalue() == ''
