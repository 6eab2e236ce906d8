"""The recipe study: row configs, aggregation, equal-time rows, tables, resuming, and
choices made on validation scores with the test split scored once."""

import json
import os
import time

import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from configs import cut as cut_config
from configs import fastcut as fastcut_config
from configs import study as study_config
from configs import tiny
from cyclegan_jax.cli import config_checks
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
  """Writes 4×4 pictures of the split (fake: gray level = 10 × seed) as evaluate does;
  a one-way model (CUT) only of its direction, and only its direction's metrics."""
  split = config.eval.split
  one_way = config.method == 'cut'
  directions = (config.direction,) if one_way else ('AtoB', 'BtoA')
  for direction in directions:
    step = 'step_2' if split == 'test' else f'{split}_step_2'
    folder = os.path.join(workdir, 'eval', step, 'images', direction)
    os.makedirs(folder, exist_ok=True)
    for name in ('x0', 'x1'):
      for kind, level in (('real', 1), ('fake', 10 * config.seed), ('gt', 255)):
        image = np.full((4, 4, 3), level, np.uint8)
        Image.fromarray(image).save(os.path.join(folder, f'{name}_{kind}.png'))
  metrics = {
    'AtoB/psnr': 10.0 + config.seed + 1000 * config.optim.lr + (split == 'test'),
    'AtoB/ssim': 0.5,
    'AtoB/psnr_identity': 3.0,
    'AtoB/ssim_identity': 0.1,
    'AtoB/cycle_l1': 0.2,
    'AtoB/checkerboard': 2.0,
    'BtoA/psnr': 9.0 + config.seed + 1000 * config.optim.lr + (split == 'test'),
    'BtoA/psnr_identity': 4.0,
  }
  return {k: v for k, v in metrics.items() if k.split('/')[0] in directions}


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


def test_synthetic_study_settings_differ_only_in_their_dataset():
  shapes, ranked = (study_config.get_config(s) for s in study_config.SYNTHETIC_SETTINGS)
  assert (shapes.dataset, ranked.dataset) == (
    'synthetic:shapes',
    'synthetic:shapes_ranked',
  )
  assert {**shapes.to_dict(), 'dataset': ''} == {**ranked.to_dict(), 'dataset': ''}
  config_checks.validate(ranked)


def test_real_switches_name_fields_of_the_default_config():
  config = study_config.get_config('shapes')
  for _, fields in recipes.SWITCHES.values():
    recipes.apply(config, fields)  # A KeyError names a missing field.
  assert set(recipes.COLOUR_TRANSFER) <= set(recipes.SWITCHES)


def test_recipe_config_is_the_method_config_with_the_switches_on():
  from configs import cut
  from configs import default

  config = recipes.recipe_config('ema+strong_identity')
  want = recipes.apply(
    default.get_config(), recipes.overrides(['ema', 'strong_identity'])
  )
  assert config.to_dict() == want.to_dict()
  config = recipes.recipe_config('cut+curve')
  assert (
    config.to_dict() == recipes.apply(cut.get_config(), {'model.head': 'curve'}).to_dict()
  )
  with pytest.raises(ValueError, match='cut and resize_conv both set model.upsample'):
    recipes.recipe_config('cut+resize_conv')


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


def must_not_run(*args):
  raise AssertionError(f'a finished run ran again: {args[1]}')


def test_combination_rows_set_every_part_under_one_name(tmp_path, fake_switches):
  base = tiny.get_config()
  config = recipe_study.row_config(base, 'slow_beta+fast_lr', seed=1)
  assert (config.optim.lr, config.optim.beta1) == (1e-3, 0.9)
  # Written in any order, one row (parts in SWITCHES order), after ROWS' own rows.
  assert recipe_study.parse_rows(['slow_beta+fast_lr', 'fast_lr']) == [
    'paper',
    'fast_lr',
    'fast_lr+slow_beta',
  ]
  assert recipe_study.row_overrides('fast_lr+slow_beta@time') == {
    'optim.lr': 1e-3,
    'optim.beta1': 0.9,
  }
  with pytest.raises(
    ValueError, match="Unknown study row 'fast_lr\\+nope'; valid: paper"
  ):
    recipe_study.parse_rows(['fast_lr+nope'])
  with pytest.raises(ValueError, match='a repeated part; valid: methods cut, fastcut'):
    recipe_study.parse_rows(['fast_lr+fast_lr'])

  workdir = str(tmp_path)
  results = recipe_study.run_study(
    base,
    workdir,
    ['fast_lr+slow_beta'],
    (0, 1, 2),
    select=0,
    final_rows=['slow_beta+fast_lr'],
    command='test',
    train_fn=fake_train,
    evaluate_fn=fake_evaluate,
  )
  runs = {(r['row'], r['split']) for r in results}
  assert ('fast_lr+slow_beta', 'test') in runs  # --final_rows, however written.
  assert ('fast_lr+slow_beta@time', 'val') in runs  # Slow: an equal-time twin.
  assert os.path.isdir(os.path.join(workdir, 'fast_lr+slow_beta', 'seed_2'))
  validation, test = open(os.path.join(workdir, 'study.md')).read().split('## Test')
  assert '| `fast_lr+slow_beta` | 2 | 3 | 12.00 ± 1.00 |' in validation
  assert '| `fast_lr+slow_beta` | 2 | 3 | 13.00 ± 1.00 |' in test
  grid = np.asarray(Image.open(os.path.join(workdir, 'pictures_AtoB.png')))
  assert grid.shape == (2 * 4, 4 * 4, 3)  # Input | paper | the combination | truth.


def test_combination_parts_that_set_one_field_are_refused(tmp_path, fake_switches):
  fake_switches['other_lr'] = ('another learning rate', {'optim.lr': 5e-4})
  fake_switches['same_lr'] = ('the same learning rate', {'optim.lr': 1e-3})
  kwargs = dict(train_fn=must_not_run, evaluate_fn=must_not_run)
  with pytest.raises(
    ValueError,
    match=r"'fast_lr\+other_lr': fast_lr and other_lr both set optim.lr "
    r'\(0.001 / 0.0005\); combine parts that set different fields: methods cut',
  ):
    recipe_study.run_study(
      tiny.get_config(), str(tmp_path), ['fast_lr+other_lr'], **kwargs
    )
  with pytest.raises(ValueError, match='same_lr adds nothing to fast_lr'):
    recipe_study.parse_rows(['fast_lr+same_lr'])
  with pytest.raises(ValueError, match='--final_rows: .*both set optim.lr'):
    recipe_study.run_study(
      tiny.get_config(),
      str(tmp_path),
      ['paper'],
      final_rows=['other_lr+fast_lr'],
      **kwargs,
    )
  assert not os.listdir(tmp_path)  # Refused before anything ran.


def test_method_rows_take_the_methods_fields_and_keep_the_study_sizes():
  base = study_config.get_config('shapes')
  for row, module in (('cut', cut_config), ('fastcut', fastcut_config)):
    official = module.get_config()
    config = recipe_study.row_config(base, row, seed=2, direction='BtoA')
    assert (config.method, config.pool_size, config.direction) == ('cut', 0, 'BtoA')
    for field in ('upsample', 'downsample', 'downsample_D'):
      assert config.model[field] == official.model[field] == 'blur', field
    assert config.loss.gan_mode == official.loss.gan_mode
    assert config.loss.lambda_identity == 0.0
    assert config.cut.to_dict() == official.cut.to_dict()
    # The study's data, sizes, schedule and networks stay.
    for field in ('dataset', 'crop_size', 'batch_size', 'num_train_steps', 'num_epochs'):
      assert config[field] == base[field], field
    for field in ('netG', 'ngf', 'ndf'):
      assert config.model[field] == base.model[field], field
    assert config.optim.lr == base.optim.lr
  fast = recipe_study.row_config(base, 'fastcut', 0).cut
  assert (fast.nce_idt, fast.lambda_NCE, fast.flip_equivariance) == (False, 10.0, True)
  ema = recipe_study.row_config(base, 'fastcut+ema', 0)
  assert (ema.method, ema.cut.lambda_NCE, ema.ema.decay) == ('cut', 10.0, 0.99)


def test_method_rows_refuse_the_switches_their_method_refuses(tmp_path):
  base = study_config.get_config('shapes')
  kwargs = dict(train_fn=must_not_run, evaluate_fn=must_not_run)
  with pytest.raises(
    ValueError,
    match=r"Row 'cut\+diffaug': cut refuses diffaug \(augment.policy=.*DiffAugment "
    r'.*\); switches valid with cut: curve, colour_skip, ema, plain_critics\.$',
  ):
    recipe_study.run_study(base, str(tmp_path), ['cut+diffaug'], **kwargs)
  with pytest.raises(ValueError, match='fastcut refuses r1 .*valid with fastcut: curve'):
    recipe_study.run_study(base, str(tmp_path), ['fastcut+ema+r1'], **kwargs)
  refused = recipes.apply(study_config.get_config('shapes'), {'loss.r1_gamma': 0.1})
  with pytest.raises(ValueError, match="Row 'cut': loss.r1_gamma=0.1 does not apply"):
    recipe_study.run_study(refused, str(tmp_path), ['cut'], **kwargs)  # A bad base.
  # Switches that undo the method's own fields conflict with them.
  with pytest.raises(ValueError, match='cut and resize_conv both set model.upsample'):
    recipe_study.parse_rows(['cut+resize_conv'])
  with pytest.raises(ValueError, match='no_identity adds nothing to cut'):
    recipe_study.parse_rows(['cut+no_identity'])
  with pytest.raises(
    ValueError, match="'ema\\+cut' has the method 'cut' after its first part"
  ):
    recipe_study.parse_rows(['ema+cut'])  # The method comes first.


def test_cut_rows_train_one_model_per_direction_and_merge_them(tmp_path):
  base = tiny.get_config()
  workdir = str(tmp_path / 'study')
  raw = str(tmp_path / 'study.jsonl')
  scored = []

  def counting_evaluate(config, run_dir):
    scored.append((config.eval.split, os.path.relpath(run_dir, workdir)))
    return fake_evaluate(config, run_dir)

  kwargs = dict(
    command='test',
    train_fn=fake_train,
    evaluate_fn=counting_evaluate,
    equal_time=False,
    select=0,
    final_rows=['cut'],
    results_file=raw,
  )
  results = recipe_study.run_study(base, workdir, ['cut'], (0, 1, 2), **kwargs)
  cut_dirs = [f'cut/{d}/seed_{s}' for s in range(3) for d in ('AtoB', 'BtoA')]
  assert scored == (
    [('val', f'paper/seed_{s}') for s in range(3)]
    + [('val', d) for d in cut_dirs]
    + [('test', f'paper/seed_{s}') for s in range(3)]
    + [('test', d) for d in cut_dirs]  # Once per direction model.
  )
  # One result per (row, seed, split), with both directions' metrics.
  assert [(r['row'], r['seed'], r['split']) for r in results] == [
    (row, s, split)
    for split in ('val', 'test')
    for row in ('paper', 'cut')
    for s in range(3)
  ]
  cut_val = results[3]
  assert {'AtoB/psnr', 'BtoA/psnr', 'AtoB/psnr_identity'} <= set(cut_val['metrics'])
  assert cut_val['metrics']['BtoA/psnr'] == pytest.approx(9.2)  # From the BtoA model.
  assert set(cut_val['directions']) == {'AtoB', 'BtoA'}
  assert cut_val['train_s'] == pytest.approx(
    sum(d['train_s'] for d in cut_val['directions'].values()), abs=0.11
  )
  validation, test = open(os.path.join(workdir, 'study.md')).read().split('## Test')
  for table, a, b in ((validation, '11.20', '10.20'), (test, '12.20', '11.20')):
    line = next(x for x in table.splitlines() if x.startswith('| `cut` |'))
    cells = line.split(' | ')
    assert cells[3].startswith(a) and cells[5].startswith(b), line  # A→B, B→A.
  lines = [json.loads(line) for line in open(raw)]
  cut_runs = [
    (x['split'], x['direction'])
    for x in lines
    if x['row'] == 'cut' and x['kind'] == 'run'
  ]
  assert cut_runs[:2] == [('val', 'AtoB'), ('val', 'BtoA')] and len(cut_runs) == 12
  assert lines[-1]['kind'] == 'row' and 'BtoA/psnr' in lines[-1]['metrics']
  grid = np.asarray(Image.open(os.path.join(workdir, 'pictures_BtoA.png')))
  assert grid.shape == (2 * 4, 4 * 4, 3)  # Input | paper | cut (its BtoA model) | truth.

  # Again: both direction models are re-read, validation and test, nothing redone.
  again = recipe_study.run_study(
    base,
    workdir,
    ['cut'],
    (0, 1, 2),
    **{**kwargs, 'train_fn': must_not_run, 'evaluate_fn': must_not_run},
  )
  assert [r['metrics'] for r in again] == [r['metrics'] for r in results]
  assert len(open(raw).readlines()) == len(lines)

  # A seed missing one direction's model is not a result: report_only leaves it out.
  os.remove(os.path.join(workdir, 'cut', 'BtoA', 'seed_2', 'ablation_result.json'))
  partial = recipe_study.run_study(
    base,
    workdir,
    ['cut'],
    (0, 1, 2),
    report_only=True,
    **{**kwargs, 'train_fn': must_not_run, 'evaluate_fn': must_not_run},
  )
  assert [r['seed'] for r in partial if r['row'] == 'cut' and r['split'] == 'val'] == [
    0,
    1,
  ]


def test_a_one_way_rows_step_cost_counts_both_its_models(tmp_path):
  base = tiny.get_config()
  base.num_train_steps = 10
  results = recipe_study.run_study(
    base,
    str(tmp_path),
    ['cut'],
    (0,),
    step_costs={'paper': 1.0, 'cut': 1.0},  # Per model: the row's step costs 2.
    train_fn=fake_train,
    evaluate_fn=fake_evaluate,
  )
  timed = [r for r in results if r['row'] == 'cut@time']
  assert [r['steps'] for r in timed] == [5]
  assert set(timed[0]['metrics']) >= {'AtoB/psnr', 'BtoA/psnr'}
  assert os.path.isdir(os.path.join(tmp_path, 'cut@time', 'BtoA', 'seed_0'))


def test_default_rows_are_valid_and_combination_only_switches_need_their_head():
  base = study_config.get_config('shapes')
  for row in recipe_study.ROWS:
    config_checks.validate(recipe_study.row_config(base, row, 0))
  assert 'curve_free_identity' not in recipe_study.ROWS
  config_checks.validate(
    recipe_study.row_config(base, 'colour_skip+curve_free_identity', 0)
  )
  with pytest.raises(ValueError, match='heads have a colour map'):
    config_checks.validate(recipe_study.row_config(base, 'curve_free_identity', 0))
