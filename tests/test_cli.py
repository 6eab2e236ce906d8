"""One command-line style: shared flags, one error handler, exit codes, result lines.

The unit tests drive `cyclegan_jax.cli.app` and `cyclegan_jax.cli.flags` in this process
on fresh FlagValues; the slow ones run every command as a user does.
"""

import io
import json
import os
import re
import subprocess
import sys

from absl import flags
import pytest

from cyclegan_jax.cli import app
from cyclegan_jax.cli import console
from cyclegan_jax.cli import flags as cli_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, 'tests', 'data')


# --------------------------------------------------------------------------------------
# Shared flags and output checks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  'text, size', [('64', (64, 64)), ('70,85', (70, 85)), (' ', None)]
)
def test_size_is_n_or_h_w(text, size):
  assert cli_flags.parse_size(text) == size


@pytest.mark.parametrize('text', ['x', '3,4,5', '0', '4,-1', '4.5'])
def test_bad_sizes_are_refused(text):
  with pytest.raises(ValueError, match='must be N or H,W'):
    cli_flags.parse_size(text)


def test_size_flag_parses_into_a_pair_and_refuses_small_sizes():
  values = flags.FlagValues()
  cli_flags.define_size((64, 64), 'Crop side.', minimum=5, flag_values=values)
  values(['prog'])
  assert values.size == (64, 64)
  values(['prog', '--size=16,24'])
  assert values.size == (16, 24)
  with pytest.raises(flags.IllegalFlagValueError, match='both >= 5'):
    values(['prog', '--size=3'])


def test_shared_flags_are_defined_once():
  values = flags.FlagValues()
  for _ in range(2):  # A second definition (tests, two commands) keeps the first.
    cli_flags.define_workdir('First.', flag_values=values)
    cli_flags.define_step(flag_values=values)
    cli_flags.define_direction(flag_values=values)
    cli_flags.define_overwrite(flag_values=values)
    cli_flags.define_json(flag_values=values)
  values(['prog', '--workdir=w', '--direction=BtoA', '--step=3', '--json'])
  assert (values.workdir, values.direction, values.step, values.json) == (
    'w',
    'BtoA',
    3,
    True,
  )
  assert values['workdir'].help == 'First.' and not values.overwrite


def test_output_folder_is_created_and_a_path_gets_its_folder(tmp_path):
  cli_flags.check_output(str(tmp_path / 'a' / 'b'), 'folder', '--output')
  assert (tmp_path / 'a' / 'b').is_dir()
  cli_flags.check_output(str(tmp_path / 'c' / 'stats.npz'), 'path', '--save_stats')
  assert (tmp_path / 'c').is_dir() and not (tmp_path / 'c' / 'stats.npz').exists()
  assert os.listdir(tmp_path / 'c') == []  # The write probe is gone.


def test_output_under_a_file_is_one_line(tmp_path):
  (tmp_path / 'file').write_text('x')
  with pytest.raises(ValueError, match=r"^--save_stats's folder .*file/d cannot") as e:
    cli_flags.check_output(str(tmp_path / 'file' / 'd' / 's.npz'), 'path', '--save_stats')
  assert '\n' not in str(e.value)
  with pytest.raises(ValueError, match=r'^--output .*file is a file'):
    cli_flags.check_output(str(tmp_path / 'file'), 'folder', '--output')


# --------------------------------------------------------------------------------------
# The wrapper: parsing, the error handler, exit codes and the result lines
# --------------------------------------------------------------------------------------


def _flag_values():
  values = flags.FlagValues()
  flags.DEFINE_integer('count', 1, 'A number.', flag_values=values)
  cli_flags.define_output('Where.', kind='folder', required=False, flag_values=values)
  cli_flags.define_json(flag_values=values)
  return values


@pytest.mark.parametrize(
  'argv, message',
  [
    (['prog', '--foo'], "Unknown command line flag 'foo'"),
    (
      ['prog', '--count=x'],
      "flag --count=x: invalid literal for int() with base 10: 'x'",
    ),
  ],
)
def test_a_bad_flag_exits_2_in_one_line(capsys, argv, message):
  with pytest.raises(SystemExit) as e:
    app.parse_flags('tool', argv, _flag_values())
  assert e.value.code == app.EXIT_USAGE
  err = capsys.readouterr().err
  assert err.startswith(f'tool: error: {message}') and err.endswith('Try --helpfull.\n')
  assert err.count('\n') == 1


def _finish(values, main, tmp_path=None, argv=('prog',)):
  stdout = io.StringIO()
  app.finish('tool', main, list(argv), flag_values=values, stdout=stdout)
  return stdout.getvalue()


def test_result_is_one_human_line_and_with_json_one_json_line():
  values = _flag_values()
  values(['prog'])
  outcome = app.Outcome('Did 3 things.', {'done': 3, 'pair': (1, 2)})
  assert _finish(values, lambda argv: outcome) == 'Did 3 things.\n'
  values(['prog', '--json'])
  human, last = _finish(values, lambda argv: outcome).splitlines()
  assert human == 'Did 3 things.' and json.loads(last) == {'done': 3, 'pair': [1, 2]}


@pytest.mark.parametrize(
  'error, code, line',
  [
    (ValueError('--tile must be >= 0, got -1.'), None, 'tool: error: --tile must'),
    (FileNotFoundError(2, 'No such file or directory', '/x/y'), None, 'tool: error: No'),
    (app.UsageError('unexpected arguments: a b'), app.EXIT_USAGE, 'tool: error: unexp'),
    (KeyboardInterrupt(), app.EXIT_INTERRUPTED, 'tool: interrupted.'),
  ],
)
def test_errors_end_in_one_line_with_their_exit_code(capsys, error, code, line):
  values = _flag_values()
  values(['prog'])

  def main(argv):
    raise error

  with pytest.raises(SystemExit) as e:
    _finish(values, main)
  if code is None:  # sys.exit(message): Python prints it and exits 1.
    assert str(e.value.code).startswith(line) and '\n' not in str(e.value.code)
  else:
    assert e.value.code == code
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count('\n') == 1


def test_outputs_are_checked_before_the_command_runs(tmp_path):
  (tmp_path / 'file').write_text('x')
  values = _flag_values()
  values(['prog', f'--output={tmp_path / "file" / "out"}'])
  ran = []
  with pytest.raises(SystemExit, match=r'^tool: error: --output .* cannot be created'):
    _finish(values, lambda argv: ran.append(argv))
  assert not ran


def test_console_configure_sets_tensorflow_quiet_only_when_not_verbose(monkeypatch):
  monkeypatch.delenv('TF_CPP_MIN_LOG_LEVEL', raising=False)
  console.configure(verbose=True)
  assert 'TF_CPP_MIN_LOG_LEVEL' not in os.environ
  console.configure(verbose=False)
  assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '2'


# --------------------------------------------------------------------------------------
# Progress bars
# --------------------------------------------------------------------------------------


def test_progress_bar_has_an_eta_and_slow_bars_write_whole_lines():
  clock = iter([0.0, 10.0, 20.0])
  stream = io.StringIO()
  bar = console.ProgressBar(4, 'ablation', unit='runs', whole_lines=True, stream=stream)
  bar._start = 0.0  # pylint: disable=protected-access
  assert bar.line(next(clock)) == 'ablation [' + '.' * 30 + '] 0/4 runs'
  bar.done = 1
  assert bar.line(next(clock)).endswith('1/4 runs, 10.0 s/run, ETA 30s')
  bar.advance()
  bar.close()
  lines = stream.getvalue().splitlines()
  assert len(lines) == 1 and '2/4 runs' in lines[0] and '\r' not in stream.getvalue()


def test_progress_bar_without_a_total_counts():
  stream = io.StringIO()
  bar = console.ProgressBar(None, 'AtoB', stream=stream)
  bar.advance(5)
  bar.close()
  assert stream.getvalue().startswith('\rAtoB 5 images') and '[' not in stream.getvalue()


# --------------------------------------------------------------------------------------
# Every command, as a user runs it
# --------------------------------------------------------------------------------------

COMMANDS = {
  'train': 'cyclegan_jax.main',
  'translate': 'cyclegan_jax.deploy.translate',
  'export': 'cyclegan_jax.deploy.export',
  'convert': 'cyclegan_jax.deploy.convert',
  'fid': 'cyclegan_jax.evaluation.fid',
  'fcn_score': 'cyclegan_jax.evaluation.fcn_score',
  'ablation': 'cyclegan_jax.studies.ablation',
  'recipe_study': 'cyclegan_jax.studies.recipe_study',
  'photo_looks': 'cyclegan_jax.studies.photo_looks',
  'app': 'cyclegan_jax.deploy.webapp.command',
  'compare': 'cyclegan_jax.studies.compare',
}


def command(module, *args, timeout=600):
  return subprocess.run(
    [sys.executable, '-m', module, *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
    env={**os.environ, 'PYTHONPATH': REPO},
  )


def one_error_line(result, prog, code):
  """The command failed with `code` and said why in one line on stderr.

  Training and evaluation log their setup (absl INFO lines) before they can fail.
  """
  assert result.returncode == code, result.stderr[-3000:]
  lines = [
    line for line in result.stderr.strip().splitlines() if not re.match(r'I\d{4} ', line)
  ]
  assert 'Traceback' not in result.stderr, result.stderr
  assert len(lines) == 1 and lines[0].startswith(f'{prog}: error: '), result.stderr
  return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize('prog', list(COMMANDS))
def test_a_bogus_flag_exits_2_in_one_line(prog):
  line = one_error_line(command(COMMANDS[prog], '--bogus_flag=1'), prog, 2)
  assert "Unknown command line flag 'bogus_flag'" in line


@pytest.fixture(name='converted', scope='module')
def fixture_converted(tmp_path_factory):
  """A workdir of converted official-layout weights (both generators): no training."""
  from cyclegan_jax.deploy import convert  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp('converted') / 'run')
  generator = os.path.join(DATA, 'G_resnet6_ngf6.pth')
  convert.convert(workdir, g_AtoB=generator, g_BtoA=generator)
  return workdir


@pytest.fixture(name='images')
def fixture_images(tmp_path):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top

  folder = tmp_path / 'images'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(3):
    pixels = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f'{i}.png')
  return str(folder)


def _output_under_a_file(prog, tmp_path, images, converted):
  """Each command's arguments with its output under a file; the error names the flag."""
  bad = str(tmp_path / 'file' / 'sub')
  weights = str(tmp_path / 'missing_inception.pth')  # Unread: the output fails first.
  return {
    'translate': (
      [f'--workdir={converted}', f'--input={images}', f'--output={bad}'],
      '--output',
    ),
    'export': (
      [f'--workdir={converted}', '--format=stablehlo', f'--output={bad}/g.hlo'],
      "--output's folder",
    ),
    'convert': (
      [f'--g_AtoB={DATA}/G_resnet6_ngf6.pth', f'--workdir={bad}'],
      '--workdir',
    ),
    'fid': (
      [images, f'--save_stats={bad}/s.npz', f'--inception_weights={weights}'],
      "--save_stats's folder",
    ),
    'ablation': ([f'--workdir={bad}', '--config=configs/ablation.py'], '--workdir'),
    'recipe_study': (
      [f'--workdir={bad}', '--config=configs/study.py:shapes'],
      '--workdir',
    ),
    'photo_looks': ([f'--output={bad}'], '--output'),
  }[prog]


@pytest.mark.slow
@pytest.mark.parametrize(
  'prog',
  ['translate', 'export', 'convert', 'fid', 'ablation', 'recipe_study', 'photo_looks'],
)
def test_an_output_that_cannot_be_written_fails_first_in_one_line(
  prog, tmp_path, images, converted
):
  (tmp_path / 'file').write_text('x')
  args, flag = _output_under_a_file(prog, tmp_path, images, converted)
  line = one_error_line(command(COMMANDS[prog], *args), prog, 1)
  assert f'error: {flag} ' in line and 'file' in line, line


@pytest.mark.slow
@pytest.mark.parametrize('prog', ['translate', 'export', 'eval', 'app'])
def test_a_missing_workdir_exits_1_in_one_line(prog, tmp_path, images):
  missing = str(tmp_path / 'nowhere')
  args = {
    'translate': [f'--input={images}', f'--output={tmp_path / "out"}'],
    'export': ['--format=stablehlo', f'--output={tmp_path / "g.hlo"}'],
    'eval': ['--mode=eval', '--config=configs/tiny.py'],
    'app': ['--port=0'],
  }[prog]
  module = COMMANDS.get(prog, 'cyclegan_jax.main')
  line = one_error_line(command(module, f'--workdir={missing}', *args), prog, 1)
  assert 'No checkpoint in' in line and missing in line


def _last_json(result):
  assert result.returncode == 0, result.stderr[-3000:]
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 2, result.stdout  # One human line, then the JSON line.
  return lines[0], json.loads(lines[1])


@pytest.mark.slow
def test_json_lines_of_convert_translate_export_and_eval(tmp_path, images):
  workdir = str(tmp_path / 'run')
  human, data = _last_json(
    command(
      COMMANDS['convert'],
      f'--g_AtoB={DATA}/G_resnet6_ngf6.pth',
      f'--g_BtoA={DATA}/G_resnet6_ngf6.pth',
      f'--workdir={workdir}',
      '--json',
    )
  )
  assert human.startswith("Wrote ['G_A', 'G_B']") and data['networks'] == ['G_A', 'G_B']

  out = str(tmp_path / 'out')
  result = command(
    COMMANDS['translate'],
    f'--workdir={workdir}',
    f'--input={images}',
    f'--output={out}',
    '--json',
  )
  human, data = _last_json(result)
  assert human.startswith(f'Wrote 3 images to {out}') and len(data['written']) == 3
  assert '3/3 images' in result.stderr  # The progress bar.

  artifact = str(tmp_path / 'new' / 'g.hlo')  # Its folder is created.
  result = command(
    COMMANDS['export'],
    f'--workdir={workdir}',
    '--format=stablehlo',
    f'--output={artifact}',
    '--direction=BtoA',
    '--json',
  )
  human, data = _last_json(result)
  assert data['format'] == 'stablehlo' and os.path.isfile(artifact)
  assert '3/3 stages' in result.stderr

  result = command(
    'cyclegan_jax.main',
    '--mode=eval',
    '--config=configs/tiny.py',
    f'--workdir={workdir}',
    '--config.eval.max_images=2',
    '--json',
  )
  human, data = _last_json(result)
  assert human.startswith('Evaluated step 0: AtoB/psnr') and data['step'] == 0
  assert 'AtoB/psnr' in data['metrics'] and os.path.isdir(data['output'])
  assert 'AtoB [' in result.stderr  # The progress bar.


@pytest.mark.slow
def test_json_lines_of_the_study_runners(tmp_path):
  from configs import ablation as ablation_config  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.studies import ablation  # pylint: disable=g-import-not-at-top

  # A finished row is re-read, not trained: the runner only tabulates it.
  workdir = tmp_path / 'ablation'
  config = ablation.variant_config(ablation_config.get_config(), 'cyclegan')
  (workdir / 'cyclegan').mkdir(parents=True)
  ablation.save_result(
    str(workdir / 'cyclegan'),
    {
      'variant': 'cyclegan',
      'paper_row': 'CycleGAN',
      'steps': int(config.num_train_steps),
      'metrics': {'AtoB/psnr': 12.5, 'AtoB/cycle_l1': 0.1},
      'wall_s': 3.0,
      'resumed_from_step': None,
      'config': json.loads(json.dumps(config.to_dict())),
    },
  )
  result = command(
    COMMANDS['ablation'], f'--workdir={workdir}', '--variants=cyclegan', '--json'
  )
  human, data = _last_json(result)
  assert human.startswith('1 runs tabulated') and data['runs'] == 1
  assert all(os.path.isfile(p) for p in data['report'])
  assert '1/1 runs' in result.stderr  # The progress over runs.

  result = command(
    COMMANDS['recipe_study'],
    f'--workdir={tmp_path / "study"}',
    '--config=configs/study.py:shapes',
    '--rows=paper',
    '--report_only',
    '--json',
  )
  human, data = _last_json(result)
  assert human.startswith('No finished runs') and data['runs'] == 0


@pytest.mark.slow
def test_photo_looks_output_and_its_old_name(tmp_path):
  pytest.importorskip('skimage')
  args = ['--looks=colour', '--size=16', '--num_train=2', '--num_test=2', '--json']
  human, data = _last_json(
    command(COMMANDS['photo_looks'], f'--out={tmp_path / "looks"}', *args)
  )
  assert data['datasets'] == [str(tmp_path / 'looks' / 'colour')] and 'Wrote' in human
  assert os.path.isdir(tmp_path / 'looks' / 'colour' / 'testA_gt')


# --------------------------------------------------------------------------------------
# The package
# --------------------------------------------------------------------------------------


def _pins(path):
  pins = {}
  with open(os.path.join(REPO, path)) as f:
    for line in f:
      line = line.split('#', 1)[0].strip()
      if line:
        name, version = line.split('==')
        pins[name.lower()] = version
  return pins


def test_package_requires_what_requirements_pin_and_names_every_command():
  import tomllib  # pylint: disable=g-import-not-at-top

  with open(os.path.join(REPO, 'pyproject.toml'), 'rb') as f:
    project = tomllib.load(f)['project']
  pins = {**_pins('requirements.txt'), **_pins('requirements-export.txt')}
  extras = project['optional-dependencies']
  for requirement in project['dependencies'] + extras['export'] + extras['test']:
    name, lowest = requirement.split('>=')
    assert pins[name.lower()] == lowest, requirement  # The tested pins satisfy it.
  runtime = {r.split('>=')[0] for r in project['dependencies']}
  assert not runtime & {'pytest', 'pytest-xdist', 'tensorstore', 'scikit-image'}
  targets = {t.split(':')[0] for t in project['scripts'].values()}
  assert targets == set(COMMANDS.values())
