"""The paper's recipe against each switch alone and the improved recipe, measured.

  python -m cyclegan_jax.studies.recipe_study --workdir=/tmp/recipe_study/colour \
      --config=configs/study.py:colour [--rows=paper,ema,improved] [--seeds=0,1]

`--config` is the base (the paper's recipe in the study setting; configs/study.py has
one per benchmark: `shapes`, and the photo looks `colour`, `tone`, `texture`, whose data
it builds on first use). Each row sets its switches (`recipes.SWITCHES`; `improved` is
`recipes.IMPROVED`) on a copy of the base and trains once per seed in
DIR/<row>/seed_<s>, then is evaluated against the ground truth. After the equal-step
rows, each row whose steps take more than 10 % longer or shorter than the paper's gets
an equal-wall-time row (`<row>@time`): the same schedule shape with the step count
scaled by the paper's time per step over the row's (timed in turns by
benchmarks/recipe_cost.py and given with --step_costs=FILE; without it, the runs'
training wall times). Results land in

  DIR/study.md    per row: mean and spread over the seeds of PSNR / SSIM against the
                  truth per direction, cycle L1, the checkerboard ratio, training time;
                  plus the input-unchanged baseline
  DIR/study.json  every seed's numbers, the configs, timings and machine load
  DIR/pictures_{AtoB,BtoA}.png   test images, one a line: input | paper | improved |
                  truth (the first seed's runs; other rows when those two are not run)

Both are rewritten after every run; running the same command again resumes (finished
runs are re-read, an interrupted one resumes from its checkpoint).
"""

from __future__ import annotations

import copy
import json
import os
import statistics
from typing import Any, Sequence

from absl import logging
import ml_collections
import numpy as np

from cyclegan_jax.cli import app
from cyclegan_jax.cli import config_checks
from cyclegan_jax.cli import errors
from cyclegan_jax.studies import ablation
from cyclegan_jax.studies import recipes
from cyclegan_jax.studies import runner

PAPER = 'paper'
IMPROVED = 'improved'
ROWS = (PAPER, *recipes.SWITCHES, IMPROVED)
TIME_SUFFIX = '@time'
TIME_TOLERANCE = 0.10  # Rows within ±10 % of the paper's training time need no @time row.
TABLE_MD = 'study.md'
TABLE_JSON = 'study.json'
DIRECTIONS = ('AtoB', 'BtoA')
_ARROWS = {'AtoB': 'A→B', 'BtoA': 'B→A'}

Result = dict[str, Any]


def row_overrides(row: str) -> dict[str, Any]:
  """The config fields row `row` sets (its `@time` twin sets the same)."""
  name = row.removesuffix(TIME_SUFFIX)
  if name == PAPER:
    return {}
  if name == IMPROVED:
    return recipes.overrides(recipes.IMPROVED)
  return recipes.overrides([name])


def parse_rows(names: Sequence[str] | None) -> list[str]:
  """The requested rows in table order (None or empty: all)."""
  if not names:
    return list(ROWS)
  unknown = [n for n in names if n not in ROWS]
  if unknown:
    raise ValueError(f'Unknown study row {unknown[0]!r}; valid: {", ".join(ROWS)}.')
  return [r for r in ROWS if r in set(names)]


def row_config(
  base: ml_collections.ConfigDict, row: str, seed: int, steps: int | None = None
) -> ml_collections.ConfigDict:
  """A copy of `base` with row `row`'s switches, `seed`, and optionally `steps`."""
  config = recipes.apply(copy.deepcopy(base), row_overrides(row))
  config.seed = seed
  if steps is not None:
    config.num_train_steps = steps
  return config


def run_one(
  row: str,
  seed: int,
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  train_fn: ablation.TrainFn,
  evaluate_fn: ablation.EvaluateFn,
) -> Result:
  """Trains and evaluates one (row, seed), or re-reads it when it finished before."""
  result = ablation.load_result(workdir, config)
  if result is not None:
    logging.info('%s seed %d: finished before; re-read %s.', row, seed, workdir)
    return result
  logging.info('%s seed %d: %d steps in %s.', row, seed, config.num_train_steps, workdir)
  scored = ablation.train_and_score(
    config, workdir, train_fn=train_fn, evaluate_fn=evaluate_fn
  )
  result = {'row': row, 'seed': seed, 'overrides': row_overrides(row), **scored}
  ablation.save_result(workdir, result)
  return result


# --------------------------------------------------------------------------------------
# Aggregation and the table
# --------------------------------------------------------------------------------------


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
  """Mean and half the range (max − min) / 2: with two seeds, ± reaches both."""
  return statistics.fmean(values), (max(values) - min(values)) / 2.0


def aggregate(results: Sequence[Result]) -> dict[str, Result]:
  """Per row (in run order): the seeds, steps, mean/spread of each metric and time."""
  rows: dict[str, Result] = {}
  for r in results:
    rows.setdefault(r['row'], {'runs': []})['runs'].append(r)
  for row in rows.values():
    runs = row['runs']
    keys = sorted(set.intersection(*(set(r['metrics']) for r in runs)))
    row['seeds'] = [r['seed'] for r in runs]
    row['steps'] = runs[0]['steps']
    row['metrics'] = {k: mean_and_spread([r['metrics'][k] for r in runs]) for k in keys}
    row['train_s'] = statistics.fmean(r['train_s'] for r in runs)
  return rows


def _cell(metrics: dict[str, tuple[float, float]], key: str, digits: int) -> str:
  if key not in metrics:
    return '–'
  mean, spread = metrics[key]
  return f'{mean:.{digits}f} ± {spread:.{digits}f}'


def table_header() -> list[str]:
  quality = [f'{_ARROWS[d]} {m}' for d in DIRECTIONS for m in ('PSNR', 'SSIM')]
  grids = [f'{_ARROWS[d]} checkerboard' for d in DIRECTIONS]
  return [
    'row',
    'steps',
    'seeds',
    *quality,
    'cycle L1 A / B',
    *grids,
    'time/step vs paper',
    'train time',
  ]


def _relative_cost(name: str, step_costs: dict[str, float] | None) -> str:
  base = name.removesuffix(TIME_SUFFIX)
  if not step_costs or PAPER not in step_costs or base not in step_costs:
    return '–'
  return f'{step_costs[base] / step_costs[PAPER]:.2f}'


def table_rows(
  rows: dict[str, Result], step_costs: dict[str, float] | None = None
) -> list[list[str]]:
  lines = []
  for name, row in rows.items():
    m = row['metrics']
    quality = [
      _cell(m, f'{d}/{k}', n) for d in DIRECTIONS for k, n in (('psnr', 2), ('ssim', 3))
    ]
    cycles = ' / '.join(
      f'{m[f"{d}/cycle_l1"][0]:.3f}' if f'{d}/cycle_l1' in m else '–' for d in DIRECTIONS
    )
    grids = [_cell(m, f'{d}/checkerboard', 2) for d in DIRECTIONS]
    lines.append(
      [
        f'`{name}`',
        str(row['steps']),
        str(len(row['seeds'])),
        *quality,
        cycles,
        *grids,
        _relative_cost(name, step_costs),
        ablation.duration(row['train_s']),
      ]
    )
  first = next(iter(rows.values()), None)
  if first and any(f'{d}/psnr_identity' in first['metrics'] for d in DIRECTIONS):
    m = first['metrics']
    baseline = [
      f'{m[f"{d}/{k}_identity"][0]:.{n}f}' if f'{d}/{k}_identity' in m else '–'
      for d in DIRECTIONS
      for k, n in (('psnr', 2), ('ssim', 3))
    ]
    lines.append(['*input unchanged*', '–', '–', *baseline, '–', '–', '–', '–', '–'])
  return lines


def markdown_report(
  rows: dict[str, Result],
  *,
  dataset: str,
  command: str,
  step_costs: dict[str, float] | None = None,
) -> str:
  header = table_header()
  seeds = sorted({s for row in rows.values() for s in row['seeds']})
  out = [
    f'# Recipe study on `{dataset}`',
    '',
    '```bash',
    command,
    '```',
    '',
    '| ' + ' | '.join(header) + ' |',
    '| ' + ' | '.join('---' for _ in header) + ' |',
    *('| ' + ' | '.join(r) + ' |' for r in table_rows(rows, step_costs)),
    '',
    f'Mean ± half the range over seeds {", ".join(map(str, seeds))}. PSNR (dB) and SSIM '
    'of the translation against the ground truth, on 8-bit [0, 1] images; *input '
    'unchanged* scores the untranslated input. Cycle L1: mean |F(G(x)) − x| in [-1, 1] '
    "units. Checkerboard: the translation's share of spectral energy at the stride-2/4 "
    "grid frequencies over the truth's (1 = the truth's texture). Time/step: the row's "
    "train step time over the paper's, timed in turns (benchmarks/recipe_cost.py). "
    'Train time: mean wall time of training with compilation, as the machine was '
    "loaded then. `ROW@time` rows train for the paper row's time.",
  ]
  return '\n'.join(out) + '\n'


def write_tables(
  workdir: str,
  results: Sequence[Result],
  *,
  base: ml_collections.ConfigDict,
  command: str,
  step_costs: dict[str, float] | None = None,
) -> None:
  """Writes DIR/study.md and DIR/study.json."""
  rows = aggregate(results)
  runner.write_report(
    workdir,
    markdown_name=TABLE_MD,
    markdown=markdown_report(
      rows, dataset=base.dataset, command=command, step_costs=step_costs
    ),
    json_name=TABLE_JSON,
    summary={
      'step_costs': step_costs,
      'rows': {
        name: {k: v for k, v in row.items() if k != 'runs'} for name, row in rows.items()
      },
      'runs': [{k: v for k, v in r.items() if k != 'config'} for r in results],
    },
    base=base,
    command=command,
  )


def equal_time_steps(steps: int, paper_train_s: float, row_train_s: float) -> int | None:
  """Steps that take the paper row's training time, or None within the tolerance."""
  if paper_train_s <= 0 or row_train_s <= 0:  # Not measured (re-read, rounded to 0).
    return None
  ratio = paper_train_s / row_train_s
  if abs(ratio - 1.0) <= TIME_TOLERANCE:
    return None
  return max(1, round(steps * ratio))


# --------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------


def _eval_images(run_dir: str, direction: str) -> str:
  """The image folder of a run's newest evaluation."""
  eval_dir = os.path.join(run_dir, 'eval')
  steps = [d for d in os.listdir(eval_dir) if d.startswith('step_')]
  newest = max(steps, key=lambda d: int(d.removeprefix('step_')))
  return os.path.join(eval_dir, newest, 'images', direction)


def picture_grid(
  workdir: str, rows: Sequence[str], seed: int, direction: str, count: int
) -> np.ndarray:
  """uint8 grid, one test image a line: input | each row's translation | truth."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  folders = [
    _eval_images(os.path.join(workdir, r, f'seed_{seed}'), direction) for r in rows
  ]
  names = sorted(
    f.removesuffix('_gt.png') for f in os.listdir(folders[0]) if f.endswith('_gt.png')
  )

  def read(folder, name, kind):
    with Image.open(os.path.join(folder, f'{name}_{kind}.png')) as im:
      return np.asarray(im.convert('RGB'))

  lines = []
  for name in names[:count]:
    cells = [read(folders[0], name, 'real')]
    cells += [read(folder, name, 'fake') for folder in folders]
    cells.append(read(folders[0], name, 'gt'))
    lines.append(np.concatenate(cells, axis=1))
  return np.concatenate(lines, axis=0)


def write_pictures(
  workdir: str, rows: Sequence[str], seed: int = 0, count: int = 6
) -> list[str]:
  """DIR/pictures_{AtoB,BtoA}.png: `picture_grid` of `rows`' runs at `seed`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  paths = []
  for direction in DIRECTIONS:
    path = os.path.join(workdir, f'pictures_{direction}.png')
    Image.fromarray(picture_grid(workdir, rows, seed, direction, count)).save(path)
    paths.append(path)
  return paths


# --------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------


def run_study(
  base: ml_collections.ConfigDict,
  workdir: str,
  rows: Sequence[str] | None = None,
  seeds: Sequence[int] = (0, 1),
  *,
  equal_time: bool = True,
  step_costs: dict[str, float] | None = None,
  report_only: bool = False,
  command: str = '',
  train_fn: ablation.TrainFn | None = None,
  evaluate_fn: ablation.EvaluateFn | None = None,
) -> list[Result]:
  """Runs every (row, seed) at the base's steps, then the equal-time rows; tabulates.

  With `report_only`, nothing trains: the finished runs are tabulated and the missing
  ones named in the log.

  The equal-time rows' steps come from `step_costs` ({row: seconds per step}, from
  benchmarks/recipe_cost.py, which times the rows in turns on a quiet step) where given,
  else from the runs' training wall times.

  Raises:
    ValueError: an unknown row, a row whose fields the config lacks or refuses, or a
      finished run directory with another config.
  """
  names = parse_rows(rows)
  for name in names:  # Every row's config, before hours are spent on the first.
    config_checks.validate(row_config(base, name, seeds[0]))
  if train_fn is None:
    from cyclegan_jax.train import loop as train  # pylint: disable=g-import-not-at-top

    train_fn = train.train_and_evaluate
  if evaluate_fn is None:
    from cyclegan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

    evaluate_fn = evaluate.evaluate
  errors.check_writable_folder(workdir, '--workdir')
  results: list[Result] = []
  # The equal-time rows join the count once the paper's time is known.
  progress = runner.run_progress(len(names) * len(seeds), 'recipe_study')

  def run(row: str, seed: int, steps: int | None = None) -> None:
    config = row_config(base, row, seed, steps)
    run_dir = os.path.join(workdir, row, f'seed_{seed}')
    if report_only:
      result = ablation.load_result(run_dir, config)
      if result is None:
        logging.info('%s seed %d: not run (%s).', row, seed, run_dir)
        return
      results.append(result)
    else:
      results.append(
        run_one(row, seed, config, run_dir, train_fn=train_fn, evaluate_fn=evaluate_fn)
      )
    write_tables(workdir, results, base=base, command=command, step_costs=step_costs)
    progress.advance()

  for name in names:
    for seed in seeds:
      run(name, seed)
  # With measured step costs the paper row need not run to size the others' twins.
  if equal_time and (PAPER in names or (step_costs and PAPER in step_costs)):
    rows_now = aggregate(results)
    cost = (
      dict(step_costs)
      if step_costs
      else {name: row['train_s'] for name, row in rows_now.items()}
    )
    if step_costs and PAPER not in step_costs:
      raise ValueError(f'--step_costs has no cost for row {PAPER!r}.')
    for name in names:
      if name == PAPER or PAPER not in cost:
        continue
      if name not in cost:
        if not step_costs:  # Report-only, and the row has not run.
          continue
        raise ValueError(f'--step_costs has no cost for row {name!r}.')
      steps = equal_time_steps(base.num_train_steps, cost[PAPER], cost[name])
      if steps is not None:
        progress.total += len(seeds)
        for seed in seeds:
          run(name + TIME_SUFFIX, seed, steps)
  done = {r['row'] for r in results if r['seed'] == seeds[0]}
  shown = [r for r in (PAPER, IMPROVED) if r in done] or sorted(done)[:1]
  if shown:
    write_pictures(workdir, shown, seed=seeds[0])
  logging.info('Wrote %s and the pictures.', os.path.join(workdir, TABLE_MD))
  return results


def define_flags() -> None:
  """The command's flags (defined by its entry point only, never at import)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.cli import flags as cli_flags  # pylint: disable=g-import-not-at-top

  cli_flags.define_workdir('Runs go in WORKDIR/<row>/seed_<s>; tables here.', output=True)
  flags.DEFINE_list('rows', None, f'Rows to run (default: all), from: {", ".join(ROWS)}.')
  flags.DEFINE_list('seeds', ['0', '1'], 'Seeds each row trains with.')
  flags.DEFINE_bool('equal_time', True, 'Add the equal-wall-time rows.')
  flags.DEFINE_bool(
    'report_only', False, 'Train nothing: tabulate the finished runs, name the rest.'
  )
  flags.DEFINE_string(
    'step_costs',
    None,
    'JSON {row: seconds per step} from benchmarks/recipe_cost.py for the equal-time '
    "rows (default: the runs' training times).",
  )
  config_flags.DEFINE_config_file(
    'config', None, 'The base: configs/study.py:SETTING.', lock_config=True
  )
  flags.mark_flags_as_required(['config'])


def main(argv: Sequence[str]) -> app.Outcome:
  from absl import flags  # pylint: disable=g-import-not-at-top

  f = flags.FLAGS
  try:
    seeds = [int(s) for s in f.seeds]
  except ValueError:
    raise app.UsageError(f'--seeds must be integers, got {",".join(f.seeds)}.') from None
  step_costs = None
  if f.step_costs:
    with open(f.step_costs) as file:
      step_costs = json.load(file)
  return runner.study_main(
    argv,
    module='cyclegan_jax.studies.recipe_study',
    study=lambda command: run_study(
      f.config,
      f.workdir,
      f.rows,
      seeds,
      equal_time=f.equal_time,
      step_costs=step_costs,
      report_only=f.report_only,
      command=command,
    ),
    workdir=f.workdir,
    report_files=(TABLE_MD, TABLE_JSON),
  )


def cli() -> None:
  """`cyclegan-jax-recipe-study` and `python -m cyclegan_jax.studies.recipe_study`."""
  app.run(main, prog='recipe_study', define_flags=define_flags)


if __name__ == '__main__':
  cli()
