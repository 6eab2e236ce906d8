"""The recipe study: row configs, aggregation, equal-time rows, tables, resuming, and
choices made on validation scores with the test split scored once."""

import json
import os
import time

import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from configs import study as study_config
from configs import tiny
from cyclegan_jax.studies import recipe_study
from cyclegan_jax.studies import recipes


class _State:
  def __init__(self, steps):
    self.step = jnp.asarray(steps)


@pytest.fixture
def fake_switches(monkeypatch):
  """Two switches on fields every config has, one of them slow to train."""
  switches = {
    'fast_lr': ('a higher learning rate', {'optim.lr': 1e-3}),
    'slow_beta': ('another beta1', {'optim.beta1': 0.9}),
  }
  monkeypatch.setattr(recipes, 'SWITCHES', switches)
  monkeypatch.setattr(recipes, 'COLOUR_TRANSFER', ('fast_lr', 'slow_beta'))
  monkeypatch.setattr(
    recipe_study, 'ROWS', ('paper', 'fast_lr', 'slow_beta', 'colour_transfer')
  )
  _State(0)  # JAX's first array is slow to make: not inside a timed fake run.
  return switches


def fake_train(config, workdir):
  """Sleeps longer with beta1 0.9 (the 'slow' switch); no training."""
  os.makedirs(workdir, exist_ok=True)
  time.sleep(0.6 if config.optim.beta1 == 0.9 else 0.1)
  return _State(config.num_train_steps)


def fake_evaluate(config, workdir):
  """Writes 4×4 pictures of the split (fake: gray level = 10 × seed) as evaluate does."""
  split = config.eval.split
  for direction in ('AtoB', 'BtoA'):
    step = 'step_2' if split == 'test' else f'{split}_step_2'
    folder = os.path.join(workdir, 'eval', step, 'images', direction)
    os.makedirs(folder, exist_ok=True)
    for name in ('x0', 'x1'):
      for kind, level in (('real', 1), ('fake', 10 * config.seed), ('gt', 255)):
        image = np.full((4, 4, 3), level, np.uint8)
        Image.fromarray(image).save(os.path.join(folder, f'{name}_{kind}.png'))
  return {
    'AtoB/psnr': 10.0 + config.seed + 1000 * config.optim.lr + (split == 'test'),
    'AtoB/ssim': 0.5,
    'AtoB/psnr_identity': 3.0,
    'AtoB/ssim_identity': 0.1,
    'AtoB/cycle_l1': 0.2,
    'AtoB/checkerboard': 2.0,
    'BtoA/psnr': 9.0 + config.seed + 1000 * config.optim.lr + (split == 'test'),
    'BtoA/psnr_identity': 4.0,
  }


def test_row_configs_set_their_switches_and_the_seed(fake_switches):
  base = tiny.get_config()
  config = recipe_study.row_config(base, 'colour_transfer', seed=3, steps=7)
  assert (config.optim.lr, config.optim.beta1, config.seed) == (1e-3, 0.9, 3)
  assert config.num_train_steps == 7
  assert config.eval.split == 'val'  # Runs are scored on validation.
  assert base.optim.lr == 2e-4 and base.seed == 0  # The base is left alone.
  paper = recipe_study.row_config(base, 'paper', 0)
  paper.eval.split = 'test'
  assert paper.to_dict() == base.to_dict()
  assert recipe_study.parse_rows(['colour_transfer']) == ['paper', 'colour_transfer']
  with pytest.raises(ValueError, match="Unknown study row 'nope'; valid: paper"):
    recipe_study.parse_rows(['nope'])


def test_real_switches_name_fields_of_the_default_config():
  config = study_config.get_config('shapes')
  for _, fields in recipes.SWITCHES.values():
    recipes.apply(config, fields)  # A KeyError names a missing field.
  assert set(recipes.COLOUR_TRANSFER) <= set(recipes.SWITCHES)


def test_equal_time_steps():
  assert recipe_study.equal_time_steps(600, 100.0, 105.0) is None
  assert recipe_study.equal_time_steps(600, 100.0, 200.0) == 300
  assert recipe_study.equal_time_steps(600, 100.0, 50.0) == 1200


def test_study_tabulates_mean_and_spread_adds_time_rows_and_resumes(
  tmp_path, fake_switches
):
  base = tiny.get_config()
  workdir = str(tmp_path)
  kwargs = dict(command='test', train_fn=fake_train, evaluate_fn=fake_evaluate)
  results = recipe_study.run_study(
    base, workdir, ['slow_beta', 'paper'], (0, 1), **kwargs
  )
  assert [(r['row'], r['seed']) for r in results][:4] == [
    ('paper', 0),
    ('paper', 1),
    ('slow_beta', 0),
    ('slow_beta', 1),
  ]
  timed = [r for r in results if r['row'] == 'slow_beta@time']
  # 2 steps at ~6× the paper's time: 1 step in the paper's time.
  assert [r['steps'] for r in timed] == [1, 1]
  assert [r['overrides'] for r in timed] == [{'optim.beta1': 0.9}] * 2
  summary = json.load(open(os.path.join(workdir, 'study.json')))
  paper = summary['rows']['paper']
  assert paper['metrics']['AtoB/psnr'] == pytest.approx([10.7, 0.5])  # Mean, spread.
  table = open(os.path.join(workdir, 'study.md')).read()
  assert '| `paper` | 2 | 2 | 10.70 ± 0.50 | 0.500 ± 0.000 |' in table
  assert '*input unchanged*' in table and '`slow_beta@time`' in table
  grid = np.asarray(Image.open(os.path.join(workdir, 'pictures_AtoB.png')))
  assert grid.shape == (2 * 4, 3 * 4, 3)  # Input | paper (seed 0) | truth.
  assert list(grid[0, ::4, 0]) == [1, 0, 255]

  def must_not_run(*args):
    raise AssertionError(f'a finished run ran again: {args[1]}')

  again = recipe_study.run_study(
    base,
    workdir,
    ['slow_beta', 'paper'],
    (0, 1),
    command='test',
    train_fn=must_not_run,
    evaluate_fn=must_not_run,
  )
  assert [r['row'] for r in again] == [r['row'] for r in results]


def test_a_field_added_after_a_run_at_its_default_does_not_void_it(tmp_path):
  base = tiny.get_config()
  kwargs = dict(train_fn=fake_train, evaluate_fn=fake_evaluate, equal_time=False)
  recipe_study.run_study(base, str(tmp_path), ['paper'], (0,), **kwargs)
  path = os.path.join(tmp_path, 'paper', 'seed_0', 'ablation_result.json')
  saved = json.load(open(path))
  del saved['config']['optim']['beta2']  # As if the run predates the field.
  json.dump(saved, open(path, 'w'))

  def must_not_run(*args):
    raise AssertionError('a finished run ran again')

  done = dict(train_fn=must_not_run, evaluate_fn=must_not_run, equal_time=False)
  recipe_study.run_study(base, str(tmp_path), ['paper'], (0,), **done)
  base.optim.beta2 = 0.99  # Not the default: the old run did not have it.
  with pytest.raises(ValueError, match='optim.beta2'):
    recipe_study.run_study(base, str(tmp_path), ['paper'], (0,), **done)


def test_step_costs_size_the_equal_time_rows(tmp_path, fake_switches):
  base = tiny.get_config()
  base.num_train_steps = 10
  kwargs = dict(command='test', train_fn=fake_train, evaluate_fn=fake_evaluate)
  costs = {'paper': 1.0, 'fast_lr': 1.05, 'slow_beta': 4.0}
  results = recipe_study.run_study(
    base,
    str(tmp_path),
    ['paper', 'fast_lr', 'slow_beta'],
    (0,),
    step_costs=costs,
    **kwargs,
  )
  timed = {r['row']: r['steps'] for r in results if r['row'].endswith('@time')}
  assert timed == {'slow_beta@time': 2}  # 10 × 1/4, rounded; fast_lr is within 10 %.
  table = open(os.path.join(tmp_path, 'study.md')).read()
  slow = next(line for line in table.splitlines() if line.startswith('| `slow_beta` |'))
  assert slow.split(' | ')[-2] == '4.00'  # Its time per step over the paper's.
  # A row alone gets its twin from the measured costs, without the paper row's runs.
  alone = recipe_study.run_study(
    base, str(tmp_path / 'alone'), ['slow_beta'], (0,), step_costs=costs, **kwargs
  )
  assert [(r['row'], r['steps']) for r in alone] == [
    ('paper', 10),  # Always run: every table has the paper's recipe.
    ('slow_beta', 10),
    ('slow_beta@time', 2),
  ]
  with pytest.raises(ValueError, match="no cost for row 'fast_lr'"):
    recipe_study.run_study(
      base, str(tmp_path), ['paper', 'fast_lr'], (0,), step_costs={'paper': 1.0}, **kwargs
    )


def test_a_run_stopped_by_a_signal_is_not_scored(tmp_path):
  def preempted(config, workdir):
    os.makedirs(workdir, exist_ok=True)
    return _State(1)  # The loop saved at step 1 of 2 and returned.

  with pytest.raises(ValueError, match='stopped at step 1 of 2 .a signal.; run the same'):
    recipe_study.run_study(
      tiny.get_config(),
      str(tmp_path),
      ['paper'],
      (0,),
      train_fn=preempted,
      evaluate_fn=fake_evaluate,
    )
  assert not os.path.exists(
    os.path.join(tmp_path, 'paper', 'seed_0', 'ablation_result.json')
  )


def test_report_only_tabulates_what_finished_and_trains_nothing(tmp_path, fake_switches):
  base = tiny.get_config()
  kwargs = dict(command='test', train_fn=fake_train, evaluate_fn=fake_evaluate)
  recipe_study.run_study(base, str(tmp_path), ['paper'], (0,), equal_time=False, **kwargs)

  def must_not_run(*args):
    raise AssertionError('report_only trained')

  results = recipe_study.run_study(
    base,
    str(tmp_path),
    ['paper', 'fast_lr'],
    (0, 1),
    report_only=True,
    train_fn=must_not_run,
    evaluate_fn=must_not_run,
  )
  assert [(r['row'], r['seed']) for r in results] == [('paper', 0)]
  assert '| `paper` | 2 | 1 |' in open(os.path.join(tmp_path, 'study.md')).read()


def test_validation_scores_refuse_any_other_split():
  val = {'row': 'paper', 'seed': 0, 'split': 'val', 'steps': 2, 'train_s': 1.0}
  val['metrics'] = {'AtoB/psnr': 10.0, 'BtoA/psnr': 12.0}
  scores = recipe_study.validation_scores([val])
  assert recipe_study.selection_score(scores.rows['paper']) == 11.0
  test = {**val, 'split': 'test'}
  with pytest.raises(ValueError, match="a 'test' score; rows are chosen on validation"):
    recipe_study.validation_scores([val, test])
  with pytest.raises(TypeError, match='ValidationScores'):
    recipe_study.select_rows({'paper': val['metrics']})


def test_select_rows_keeps_paper_and_colour_transfer_and_picks_the_best_on_validation():
  def row(a, b):
    return {'AtoB/psnr': (a, 0.0), 'BtoA/psnr': (b, 0.0)}

  scores = recipe_study.ValidationScores(
    {
      'paper': row(10, 10),
      'ema': row(12, 11),
      'r1': row(20, 1),  # Best A→B, worst mean: both directions count.
      'diffaug': row(13, 13),
      'colour_transfer': row(5, 5),
    }
  )
  assert recipe_study.select_rows(scores, best=1) == [
    'paper',
    'diffaug',
    'colour_transfer',
  ]
  assert recipe_study.select_rows(scores, best=0, keep=['r1']) == [
    'paper',
    'r1',
    'colour_transfer',
  ]
  assert recipe_study.select_rows(scores, best=2) == [
    'paper',
    'ema',
    'diffaug',
    'colour_transfer',
  ]


def test_three_seeds_score_the_final_rows_on_test_once_with_raw_lines(
  tmp_path, fake_switches
):
  base = tiny.get_config()
  workdir = str(tmp_path / 'study')
  raw = str(tmp_path / 'results' / 'study.jsonl')
  scored = []

  def counting_evaluate(config, run_dir):
    scored.append((config.eval.split, os.path.relpath(run_dir, workdir)))
    return fake_evaluate(config, run_dir)

  kwargs = dict(
    command='python -m cyclegan_jax.studies.recipe_study --x',
    train_fn=fake_train,
    evaluate_fn=counting_evaluate,
    equal_time=False,
    select=0,
    results_file=raw,
  )
  results = recipe_study.run_study(
    base, workdir, ['paper', 'fast_lr', 'slow_beta'], (0, 1, 2), **kwargs
  )
  # Every run on validation; only the final rows (paper: select=0, colour_transfer not run)
  # on test, after all the validation runs.
  val_runs = [(r['row'], r['seed']) for r in results if r['split'] == 'val']
  assert len(val_runs) == 9
  test_runs = [(r['row'], r['seed']) for r in results if r['split'] == 'test']
  assert test_runs == [('paper', 0), ('paper', 1), ('paper', 2)]
  assert [s for s, _ in scored] == ['val'] * 9 + ['test'] * 3
  table = open(os.path.join(workdir, 'study.md')).read()
  validation, test = table.split('## Test')
  assert '`fast_lr`' in validation and '`fast_lr`' not in test
  assert '| `paper` | 2 | 3 | 12.20 ± 1.00 |' in test  # The fake adds 1 dB on test.
  # Each row against the paper's and the input's mean PSNR over both directions.
  paper_line = next(x for x in test.splitlines() if x.startswith('| `paper`'))
  assert paper_line.split(' | ')[7] == '+0.00 / +8.20'
  fast = next(x for x in validation.splitlines() if x.startswith('| `fast_lr`'))
  assert fast.split(' | ')[7] == '+0.80 / +8.00'
  assert '*input unchanged*' in validation and '*input unchanged*' in test
  lines = [json.loads(line) for line in open(raw)]
  assert [(x['kind'], x['split']) for x in lines] == [('run', 'val')] * 9 + [
    ('run', 'test')
  ] * 3 + [('row', 'test')]
  assert all(x['command'] == kwargs['command'] for x in lines)
  assert lines[-1]['metrics']['AtoB/psnr'] == {'mean': pytest.approx(12.2), 'spread': 1.0}
  assert json.load(open(os.path.join(workdir, 'selection.json')))['final_rows'] == [
    'paper'
  ]

  # Later: another row joins the final ones; paper's test scores are re-read, not redone.
  scored.clear()
  recipe_study.run_study(
    base,
    workdir,
    ['paper', 'fast_lr', 'slow_beta'],
    (0, 1, 2),
    **{**kwargs, 'select': 1},
  )
  assert scored == [('test', f'fast_lr/seed_{s}') for s in range(3)]
  assert len(open(raw).readlines()) == len(lines) + 4  # 3 runs and 1 row, no repeats.


def test_fewer_than_three_seeds_give_no_test_numbers(tmp_path, fake_switches):
  kwargs = dict(train_fn=fake_train, evaluate_fn=fake_evaluate, equal_time=False)
  results = recipe_study.run_study(
    tiny.get_config(), str(tmp_path), ['paper'], (0, 1), **kwargs
  )
  assert {r['split'] for r in results} == {'val'}
  table = open(os.path.join(tmp_path, 'study.md')).read()
  assert 'Withheld: 2 seed(s); test numbers need at least 3' in table
  assert not os.path.exists(os.path.join(tmp_path, 'paper', 'seed_0', 'test_result.json'))
