"""The paper's recipe against switches, their combinations, CUT / FastCUT and the colour
transfer recipe, measured.

  python -m cyclegan_jax.studies.recipe_study --workdir=/tmp/recipe_study/colour \
      --config=configs/study.py:colour [--rows=paper,ema,ema+diffaug,cut,cut+ema] \
      [--seeds=0,1,2] [--select=1] [--final_rows=ema] \
      [--results=benchmarks/results/NAME.jsonl]

Honest measurement: every run is scored on the *validation* split (`eval.split='val'`),
and only those scores choose anything (`select_rows` takes `ValidationScores`, which
refuses any other split). The final rows, the paper's recipe, `colour_transfer` where it
ran, the `--select` best rows on validation and any `--final_rows`, are then scored on
the test split once each (DIR/<row>/seed_<s>/test_result.json is re-read, never redone),
and only with at least MIN_SEEDS seeds: fewer give a validation table and no test
numbers. The paper's row always runs; both directions and the input-unchanged baseline
are in every table. Every new score is also one raw JSON line in --results.

`--config` is the base (the paper's recipe in the study setting; configs/study.py has
one per benchmark: `shapes`, and the photo looks `colour`, `tone`, `texture`, whose data
it builds on first use). Each row sets its switches (`recipes.SWITCHES`; `colour_transfer` is
`recipes.COLOUR_TRANSFER`) on a copy of the base and trains once per seed in
DIR/<row>/seed_<s>, then is evaluated against the ground truth. Without --rows the rows
are ROWS: the paper, each switch alone (but `recipes.COMBINATION_ONLY`'s) and
`colour_transfer`. Besides those:

  a+b+c     a combination: every named switch's fields at once (`ema+diffaug`). Its
            parts take one order (SWITCHES'), so `diffaug+ema` is the same row; an
            unknown part, or two parts that set one field, is refused before any run.
  cut, fastcut
            the method rows: the base with configs/cut.py's / configs/fastcut.py's
            method fields (`recipes.METHOD_FIELDS` and every `cut.*`), keeping the
            base's data, sizes, schedule and network depth and width. A combination may
            start with one (`cut+ema`); a switch the method refuses (CUT: diffaug,
            spectral_norm, r1, patch_loss; resize_conv and no_identity clash with its
            own fields) is refused at planning time. CUT is one-way: such a row trains
            one model per direction, in DIR/<row>/<AtoB|BtoA>/seed_<s>, each evaluated
            (and test-scored) in its own direction, and the two merge into one result
            per seed with both directions' metrics and both models' training time.

After the equal-step rows, each row whose steps take more than 10 % longer or shorter
than the paper's gets an equal-wall-time row (`<row>@time`): the same schedule shape
with the step count scaled by the paper's time per step over the row's (timed in turns
by benchmarks/recipe_cost.py, one model per row, and given with --step_costs=FILE, a
one-way row's cost counted for both its models; without it, the runs' training wall
times). Results land in

  DIR/study.md    the validation table (every row), the selection, and the test table
                  (final rows): per row mean and spread over the seeds of PSNR / SSIM
                  against the truth per direction, cycle L1, the checkerboard ratio,
                  training time; plus the input-unchanged baseline
  DIR/study.json  every seed's numbers, the configs, timings and machine load
  DIR/study.jsonl (or --results) one raw line per new score, with the command
  DIR/pictures_{AtoB,BtoA}.png   images, one a line: input | each final row | truth
                  (test images once scored, else validation; the first seed's runs)

Both are rewritten after every run; running the same command again resumes (finished
runs are re-read, an interrupted one resumes from its checkpoint).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import os
import statistics
from typing import Any, Collection, Mapping, Sequence

from absl import logging
import ml_collections
import numpy as np

from cyclegan_jax.cli import app
from cyclegan_jax.cli import config_checks
from cyclegan_jax.cli import errors
from cyclegan_jax.evaluation import eval_dirs
from cyclegan_jax.studies import ablation
from cyclegan_jax.studies import recipes
from cyclegan_jax.studies import runner

PAPER = 'paper'
COLOUR_TRANSFER = 'colour_transfer'
ROWS = (
  PAPER,
  *(s for s in recipes.SWITCHES if s not in recipes.COMBINATION_ONLY),
  COLOUR_TRANSFER,
)
TIME_SUFFIX = '@time'
TIME_TOLERANCE = 0.10  # Rows within ±10 % of the paper's training time need no @time row.
TABLE_MD = 'study.md'
TABLE_JSON = 'study.json'
RAW_JSONL = 'study.jsonl'
TEST_RESULT_FILE = 'test_result.json'
SELECTION_FILE = 'selection.json'
# Fewer seeds than this give no test numbers: one seed's luck is not a result.
MIN_SEEDS = 3
DEFAULT_SEEDS = (0, 1, 2)
DIRECTIONS = ('AtoB', 'BtoA')
ARROWS = {'AtoB': 'A→B', 'BtoA': 'B→A'}

Result = dict[str, Any]


def _known_rows() -> str:
  return (
    f'{", ".join(ROWS)}, the methods {", ".join(recipes.METHODS)}, or a combination '
    f"of switches joined by '+' that may start with a method (ema+diffaug, cut+ema)"
  )


def canonical_row(row: str) -> str:
  """`row` with a combination's parts in their one order (method first, switches in
  SWITCHES order), its `@time` suffix kept.

  Raises:
    ValueError: an unknown row, or a combination with an unknown, repeated or
      conflicting part (one line listing the valid names).
  """
  name = row.removesuffix(TIME_SUFFIX)
  suffix = row[len(name) :]
  if name in ROWS:
    return row
  if not name or not set(name.split(recipes.SEPARATOR)) <= {
    *recipes.SWITCHES,
    *recipes.METHODS,
  }:
    raise ValueError(f'Unknown study row {row!r}; valid: {_known_rows()}.')
  recipes.combination_overrides(name)  # Conflicts are refused here, in one line.
  return recipes.canonical(name) + suffix


def row_overrides(row: str) -> dict[str, Any]:
  """The config fields row `row` sets (its `@time` twin sets the same)."""
  name = row.removesuffix(TIME_SUFFIX)
  if name == PAPER:
    return {}
  if name == COLOUR_TRANSFER:
    return recipes.overrides(recipes.COLOUR_TRANSFER)
  return recipes.combination_overrides(name)


def parse_rows(names: Sequence[str] | None) -> list[str]:
  """The requested rows (None or empty: all of ROWS), the paper's always: ROWS' own in
  their order, then method rows and combinations in the order given."""
  if not names:
    return list(ROWS)
  wanted = [canonical_row(n) for n in names]
  for name in wanted:
    if name.endswith(TIME_SUFFIX):
      raise ValueError(
        f'Row {name!r}: equal-time rows are added by the study itself (--equal_time).'
      )
  extra = [n for i, n in enumerate(wanted) if n not in ROWS and n not in wanted[:i]]
  return [r for r in ROWS if r in {PAPER, *wanted}] + extra


def row_config(
  base: ml_collections.ConfigDict,
  row: str,
  seed: int,
  steps: int | None = None,
  direction: str | None = None,
) -> ml_collections.ConfigDict:
  """A copy of `base` with row `row`'s switches, `seed`, optionally `steps` and (for a
  one-way row's model) `direction`; scored on the validation split (the test split is
  scored by `score_test_once` only)."""
  config = recipes.apply(copy.deepcopy(base), row_overrides(row))
  config.seed = seed
  config.eval.split = 'val'
  if steps is not None:
    config.num_train_steps = steps
  if direction is not None:
    config.direction = direction
  return config


def row_directions(config: ml_collections.ConfigDict) -> tuple[str | None, ...]:
  """(None,): one model translates both ways (CycleGAN); else the directions the row
  trains one model each for (a one-way method such as CUT: both, one run each).

  Raises:
    ValueError: a direction the method cannot train.
  """
  from cyclegan_jax import methods  # pylint: disable=g-import-not-at-top

  method = methods.get(config.method)
  if set(DIRECTIONS) <= set(method.configure(config).directions):
    return (None,)
  for direction in DIRECTIONS:
    one = copy.deepcopy(config)
    one.direction = direction
    if direction not in method.configure(one).directions:
      raise ValueError(
        f'method={config.method} cannot train {direction}; every row needs both '
        'directions.'
      )
  return DIRECTIONS


def check_method_row(base: ml_collections.ConfigDict, row: str) -> None:
  """Refuses, in one line at planning time, a method row whose method refuses one of its
  switches (CUT has no DiffAugment, R1, colour pull or spectral norm) or the base."""
  name = row.removesuffix(TIME_SUFFIX)
  method = None if name in ROWS else recipes.split_combination(name)[0]
  check = method and _method_check(row_config(base, method, 0).method)
  config = lambda row: lambda: row_config(base, row, 0)  # noqa: E731
  if not check or _refusal(check, config(name)) is None:
    return
  switches = recipes.split_combination(name)[1]
  why = {
    s: _refusal(check, config(f'{method}{recipes.SEPARATOR}{s}'))
    for s in recipes.SWITCHES
  }
  refused = [s for s in switches if why[s]]
  if not refused:  # The base itself is no config for the method.
    raise ValueError(f'Row {row!r}: {_refusal(check, config(name))}')
  valid = [s for s in recipes.SWITCHES if not why[s]]
  raise ValueError(
    f'Row {row!r}: {method} refuses {refused[0]} ({why[refused[0]]}); switches valid '
    f'with {method}: {", ".join(valid) or "none"}.'
  )


def _refusal(check, make_config) -> str | None:
  """Why `check` refuses the config `make_config` makes (a conflict counts), or None."""
  try:
    check(make_config())
  except ValueError as e:
    return str(e).split(': drop the override')[0].rstrip('.')
  return None


def _method_check(method: str):
  """The method's own check of the options its step has (None: none to make)."""
  if method == 'cut':
    from cyclegan_jax.methods import cut  # pylint: disable=g-import-not-at-top

    return cut.check_options
  return None


def run_dir(workdir: str, row: str, seed: int, direction: str | None = None) -> str:
  """DIR/<row>/seed_<s>, or DIR/<row>/<direction>/seed_<s> for a one-way row's model."""
  return os.path.join(workdir, row, *([direction] if direction else []), f'seed_{seed}')


def merge_directions(parts: Sequence[Result]) -> Result:
  """One (row, seed) result from a one-way row's models, one per direction: each
  direction's metrics from its own model, the training times summed (both models are
  the row's cost, as both directions are the paper's in its one run)."""
  first = parts[0]
  merged = {k: v for k, v in first.items() if k not in ('direction', 'config', 'new')}
  merged['metrics'] = {
    k: v
    for r in parts
    for k, v in r['metrics'].items()
    if k.startswith(f'{r["direction"]}/')
  }
  for key in ('train_s', 'eval_s', 'wall_s'):
    if all(key in r for r in parts):
      merged[key] = round(sum(r[key] for r in parts), 1)
  merged['directions'] = {
    r['direction']: {k: r[k] for k in ('steps', 'train_s', 'resumed_from_step') if k in r}
    for r in parts
  }
  return merged


def run_one(
  row: str,
  seed: int,
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  train_fn: ablation.TrainFn,
  evaluate_fn: ablation.EvaluateFn,
  direction: str | None = None,
) -> Result:
  """Trains and evaluates one (row, seed[, direction]) model, or re-reads it when it
  finished before."""
  result = ablation.load_result(workdir, config)
  if result is not None:
    logging.info('%s seed %d: finished before; re-read %s.', row, seed, workdir)
    return result
  logging.info('%s seed %d: %d steps in %s.', row, seed, config.num_train_steps, workdir)
  scored = ablation.train_and_score(
    config, workdir, train_fn=train_fn, evaluate_fn=evaluate_fn
  )
  result = {
    'row': row,
    'seed': seed,
    **({'direction': direction} if direction else {}),
    'split': 'val',
    'overrides': row_overrides(row),
    **scored,
  }
  ablation.save_result(workdir, result)
  result['new'] = True  # Not saved: this call made the score (a raw line is due).
  return result


def score_test_once(
  row: str,
  seed: int,
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  evaluate_fn: ablation.EvaluateFn,
  direction: str | None = None,
) -> Result:
  """The test scores of a finished (row, seed[, direction]) run: evaluated the first
  time, then only re-read, so the test split is scored once per final run whatever is
  run later."""
  path = os.path.join(workdir, TEST_RESULT_FILE)
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  test_config = copy.deepcopy(config)
  test_config.eval.split = 'test'
  val = ablation.load_result(workdir, config)
  if val is None:
    raise ValueError(f'{workdir} has no finished run to score on the test split.')
  metrics = evaluate_fn(test_config, workdir)
  result = {
    'row': row,
    'seed': seed,
    **({'direction': direction} if direction else {}),
    'split': 'test',
    'steps': val['steps'],
    'train_s': val['train_s'],
    'metrics': {k: float(v) for k, v in metrics.items()},
  }
  with open(path, 'w') as f:
    json.dump(result, f, indent=1)
  return {**result, 'new': True}


# --------------------------------------------------------------------------------------
# Selection: validation scores only
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ValidationScores:
  """Per row, the mean and spread over seeds of each validation metric; nothing else.

  The only input of `select_rows`: built by `validation_scores`, which refuses a result
  of any other split, so a choice cannot see a test score by accident.
  """

  rows: Mapping[str, Mapping[str, tuple[float, float]]]


def validation_scores(results: Sequence[Result]) -> ValidationScores:
  """The validation runs' scores per row.

  Raises:
    ValueError: a result that is not a validation score.
  """
  for r in results:
    if r.get('split') != 'val':
      raise ValueError(
        f'Row {r["row"]!r} seed {r["seed"]}: a {r.get("split", "test")!r} score; '
        'rows are chosen on validation scores only.'
      )
  return ValidationScores(
    {name: dict(row['metrics']) for name, row in aggregate(results).items()}
  )


def selection_score(metrics: Mapping[str, tuple[float, float]]) -> float | None:
  """The criterion: mean PSNR (dB) over both directions (None: a direction unscored)."""
  keys = [f'{d}/psnr' for d in DIRECTIONS]
  if not all(k in metrics for k in keys):
    return None
  return statistics.fmean(metrics[k][0] for k in keys)


def select_rows(
  scores: ValidationScores, *, best: int = 1, keep: Sequence[str] = ()
) -> list[str]:
  """The final rows, in table order: the paper's, `colour_transfer` and `keep` where they ran,
  and the `best` others with the highest `selection_score` on validation.

  Raises:
    TypeError: `scores` is not `ValidationScores`.
  """
  if not isinstance(scores, ValidationScores):
    raise TypeError('select_rows takes ValidationScores (validation_scores(results)).')
  ran = list(scores.rows)
  ranked = sorted(
    (r for r in ran if selection_score(scores.rows[r]) is not None),
    key=lambda r: -selection_score(scores.rows[r]),
  )
  chosen = {PAPER, COLOUR_TRANSFER, *keep, *ranked[: max(0, best)]}
  return [r for r in ran if r in chosen]


# --------------------------------------------------------------------------------------
# Raw lines
# --------------------------------------------------------------------------------------


def append_raw(path: str, record: dict[str, Any]) -> None:
  """Appends one JSON line (with the UTC time) to `path`, making its folder."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  line = {'utc': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}
  line.update(record)
  with open(path, 'a', encoding='utf-8') as f:
    f.write(json.dumps(line) + '\n')


def run_line(result: Result, *, dataset: str, command: str) -> dict[str, Any]:
  """The raw line of one (row, seed, split) score."""
  keep = ('row', 'seed', 'direction', 'split', 'steps', 'train_s', 'metrics', 'overrides')
  return {
    'kind': 'run',
    'dataset': dataset,
    'command': command,
    'cpu_count': os.cpu_count(),
    **{k: result[k] for k in keep if k in result},
  }


def row_line(
  name: str, row: Result, *, split: str, dataset: str, command: str
) -> dict[str, Any]:
  """The raw line of one row's mean and spread over its seeds on `split`."""
  return {
    'kind': 'row',
    'dataset': dataset,
    'command': command,
    'row': name,
    'split': split,
    'steps': row['steps'],
    'seeds': row['seeds'],
    'metrics': {k: {'mean': m, 'spread': s} for k, (m, s) in row['metrics'].items()},
  }


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


def quality_columns() -> list[str]:
  """'A→B PSNR', 'A→B SSIM', 'B→A PSNR', 'B→A SSIM'."""
  return [f'{ARROWS[d]} {m}' for d in DIRECTIONS for m in ('PSNR', 'SSIM')]


def checkerboard_columns() -> list[str]:
  return [f'{ARROWS[d]} checkerboard' for d in DIRECTIONS]


def table_header() -> list[str]:
  quality, grids = quality_columns(), checkerboard_columns()
  return [
    'row',
    'steps',
    'seeds',
    *quality,
    'PSNR vs paper / vs input',
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


def _gains(
  m: dict[str, tuple[float, float]], paper: dict[str, tuple[float, float]]
) -> str:
  """Mean PSNR over both directions minus the paper row's, and minus the input's."""
  own = selection_score(m)
  if own is None:
    return '–'
  identity = [m.get(f'{d}/psnr_identity') for d in DIRECTIONS]
  versus_paper = selection_score(paper) if paper else None
  parts = [
    f'{own - versus_paper:+.2f}' if versus_paper is not None else '–',
    f'{own - statistics.fmean(v[0] for v in identity):+.2f}' if all(identity) else '–',
  ]
  return ' / '.join(parts)


def table_rows(
  rows: dict[str, Result], step_costs: dict[str, float] | None = None
) -> list[list[str]]:
  lines = []
  paper = rows[PAPER]['metrics'] if PAPER in rows else {}
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
        _gains(m, paper),
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
    lines.append(['*input unchanged*', '–', '–', *baseline, *['–'] * 6])
  return lines


def markdown_table(
  rows: dict[str, Result], step_costs: dict[str, float] | None = None
) -> list[str]:
  header = table_header()
  return [
    '| ' + ' | '.join(header) + ' |',
    '| ' + ' | '.join('---' for _ in header) + ' |',
    *('| ' + ' | '.join(r) + ' |' for r in table_rows(rows, step_costs)),
  ]


def markdown_report(
  rows: dict[str, Result],
  *,
  dataset: str,
  command: str,
  step_costs: dict[str, float] | None = None,
  test_rows: dict[str, Result] | None = None,
  final: Sequence[str] = (),
  test_note: str = '',
) -> str:
  """The report: the validation table, the selection, then the test table (or why
  there is none)."""
  seeds = sorted({s for row in rows.values() for s in row['seeds']})
  scores = {n: selection_score(r['metrics']) for n, r in rows.items()}
  scored = sorted(((v, n) for n, v in scores.items() if v is not None), reverse=True)
  ranking = ', '.join(f'`{n}` {v:.2f}' for v, n in scored)
  out = [
    f'# Recipe study on `{dataset}`',
    '',
    '```bash',
    command,
    '```',
    '',
    '## Validation (every row; choices are made here)',
    '',
    *markdown_table(rows, step_costs),
    '',
    f'Selection criterion, mean validation PSNR over both directions: {ranking or "–"}.',
    f'Final rows: {", ".join(f"`{n}`" for n in final) or "–"}.',
    '',
    '## Test (final rows, each scored once)',
    '',
    *(markdown_table(test_rows, step_costs) if test_rows else [test_note or '–']),
    '',
    f'Mean ± half the range over seeds {", ".join(map(str, seeds))}. PSNR vs paper / vs '
    "input: the row's mean PSNR over both directions minus the paper row's and minus "
    "the untranslated input's (dB). PSNR (dB) and SSIM "
    'of the translation against the ground truth, on 8-bit [0, 1] images; *input '
    'unchanged* scores the untranslated input. Cycle L1: mean |F(G(x)) − x| in [-1, 1] '
    "units. Checkerboard: the translation's share of spectral energy at the stride-2/4 "
    "grid frequencies over the truth's (1 = the truth's texture). Time/step: the row's "
    "train step time over the paper's, timed in turns (benchmarks/recipe_cost.py). "
    'Train time: mean wall time of training with compilation, as the machine was '
    "loaded then. `ROW@time` rows train for the paper row's time. A one-way row "
    '(`cut`, `fastcut`, `cut+…`) trains one model per direction, each scored in its '
    'own direction; its time counts both models.',
  ]
  return '\n'.join(out) + '\n'


def _row_summaries(rows: dict[str, Result]) -> dict[str, Result]:
  return {
    name: {k: v for k, v in row.items() if k != 'runs'} for name, row in rows.items()
  }


def write_tables(
  workdir: str,
  results: Sequence[Result],
  *,
  base: ml_collections.ConfigDict,
  command: str,
  step_costs: dict[str, float] | None = None,
  test_results: Sequence[Result] = (),
  final: Sequence[str] = (),
  test_note: str = '',
) -> None:
  """Writes DIR/study.md and DIR/study.json (validation rows, then the test rows)."""
  rows = aggregate(results)
  test_rows = aggregate(test_results) if test_results else None

  def stored(r: Result) -> Result:
    return {k: v for k, v in r.items() if k not in ('config', 'new')}

  runner.write_report(
    workdir,
    markdown_name=TABLE_MD,
    markdown=markdown_report(
      rows,
      dataset=base.dataset,
      command=command,
      step_costs=step_costs,
      test_rows=test_rows,
      final=final,
      test_note=test_note,
    ),
    json_name=TABLE_JSON,
    summary={
      'step_costs': step_costs,
      'rows': _row_summaries(rows),
      'final_rows': list(final),
      'test_rows': _row_summaries(test_rows or {}),
      'test_note': test_note,
      'runs': [stored(r) for r in results],
      'test_runs': [stored(r) for r in test_results],
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


def _eval_images(run_dir: str, direction: str, split: str = 'test') -> str:
  """The image folder of a run's newest evaluation of `split`."""
  return os.path.join(eval_dirs.latest(run_dir, split), 'images', direction)


def picture_grid(
  workdir: str,
  rows: Sequence[str],
  seed: int,
  direction: str,
  count: int,
  split: str = 'test',
  one_way: Collection[str] = (),
) -> np.ndarray:
  """uint8 grid, one image of `split` a line: input | each row's translation | truth
  (a `one_way` row's from its model of `direction`)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  folders = [
    _eval_images(
      run_dir(workdir, r, seed, direction if row_is_one_way(r, one_way) else None),
      direction,
      split,
    )
    for r in rows
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
  workdir: str,
  rows: Sequence[str],
  seed: int = 0,
  count: int = 6,
  split: str = 'test',
  one_way: Collection[str] = (),
) -> list[str]:
  """DIR/pictures_{AtoB,BtoA}.png: `picture_grid` of `rows`' runs at `seed`."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  paths = []
  for direction in DIRECTIONS:
    path = os.path.join(workdir, f'pictures_{direction}.png')
    grid = picture_grid(workdir, rows, seed, direction, count, split, one_way)
    Image.fromarray(grid).save(path)
    paths.append(path)
  return paths


# --------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------


def run_study(
  base: ml_collections.ConfigDict,
  workdir: str,
  rows: Sequence[str] | None = None,
  seeds: Sequence[int] = DEFAULT_SEEDS,
  *,
  equal_time: bool = True,
  step_costs: dict[str, float] | None = None,
  report_only: bool = False,
  command: str = '',
  select: int = 1,
  final_rows: Sequence[str] = (),
  score_test: bool = True,
  results_file: str | None = None,
  train_fn: ablation.TrainFn | None = None,
  evaluate_fn: ablation.EvaluateFn | None = None,
) -> list[Result]:
  """Runs every (row, seed) at the base's steps, then the equal-time rows, scoring each
  on validation; selects the final rows on those scores; scores them on test; tabulates.

  With `report_only`, nothing trains or is evaluated: the finished runs and test scores
  are tabulated and the missing ones named in the log. The test split is scored only
  with `score_test` and at least MIN_SEEDS seeds, for the rows `select_rows` picks from
  the validation scores (`select` best, plus `final_rows`).

  A one-way row (a method row such as `cut`) trains one model per direction at each
  seed; its results are merged into one per (row, seed) with both directions' metrics.

  The equal-time rows' steps come from `step_costs` ({row: seconds per step of one
  model}, from benchmarks/recipe_cost.py, which times the rows in turns on a quiet
  step; a one-way row's counts both its models) where given, else from the runs'
  training wall times.

  Returns:
    The validation results (one per row and seed), then the test results of the final
    rows.

  Raises:
    ValueError: an unknown row, a combination with conflicting parts or a switch its
      method refuses, a row whose fields the config lacks or refuses, a finished run
      directory with another config, or a bad --select.
  """
  names = parse_rows(rows)
  try:
    final_rows = [canonical_row(r) for r in final_rows]
  except ValueError as e:
    raise ValueError(f'--final_rows: {e}') from None
  if select < 0:
    raise ValueError(f'--select must be >= 0 (best rows on validation), got {select}.')
  # Every row's configs, before hours are spent on the first.
  directions: dict[str, tuple[str | None, ...]] = {}
  for name in names:
    check_method_row(base, name)
    directions[name] = row_directions(row_config(base, name, seeds[0]))
    for direction in directions[name]:
      config_checks.validate(row_config(base, name, seeds[0], direction=direction))
  one_way = {n for n, d in directions.items() if d != (None,)}
  if step_costs:  # Per model; a one-way row trains one per direction.
    step_costs = {n: c * len(directions.get(n, (None,))) for n, c in step_costs.items()}
  if train_fn is None:
    from cyclegan_jax.train import loop as train  # pylint: disable=g-import-not-at-top

    train_fn = train.train_and_evaluate
  if evaluate_fn is None:
    from cyclegan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

    evaluate_fn = evaluate.evaluate
  errors.check_writable_folder(workdir, '--workdir')
  raw_path = results_file or os.path.join(workdir, RAW_JSONL)
  dataset = base.dataset
  results: list[Result] = []
  # The equal-time rows join the count once the paper's time is known.
  progress = runner.run_progress(len(names) * len(seeds), 'recipe_study')

  def tables(**test) -> None:
    write_tables(
      workdir, results, base=base, command=command, step_costs=step_costs, **test
    )

  def run(row: str, seed: int, steps: int | None = None) -> None:
    parts = []
    for direction in directions[row.removesuffix(TIME_SUFFIX)]:
      config = row_config(base, row, seed, steps, direction)
      folder = run_dir(workdir, row, seed, direction)
      if report_only:
        result = ablation.load_result(folder, config)
        if result is None:
          logging.info('%s seed %d: not run (%s).', row, seed, folder)
          return
      else:
        result = run_one(
          row,
          seed,
          config,
          folder,
          train_fn=train_fn,
          evaluate_fn=evaluate_fn,
          direction=direction,
        )
        if result.pop('new', False):
          append_raw(raw_path, run_line(result, dataset=dataset, command=command))
      parts.append(result)
    results.append(merge_directions(parts) if row_is_one_way(row, one_way) else parts[0])
    tables()
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

  # The choice sees validation scores and nothing else; test scores come after it.
  final = select_rows(validation_scores(results), best=select, keep=final_rows)
  test_results, test_note = _test_phase(
    base,
    workdir,
    results,
    final,
    seeds,
    directions=directions,
    score_test=score_test,
    report_only=report_only,
    evaluate_fn=evaluate_fn,
    raw_path=raw_path,
    command=command,
  )
  tables(test_results=test_results, final=final, test_note=test_note)
  done = {r['row'] for r in results if r['seed'] == seeds[0]}
  shown = [r for r in final if r in done] or sorted(done)[:1]
  tested = {r['row'] for r in test_results if r['seed'] == seeds[0]}
  if shown:
    split = 'test' if set(shown) <= tested else 'val'
    write_pictures(workdir, shown, seed=seeds[0], split=split, one_way=one_way)
  logging.info('Wrote %s and the pictures.', os.path.join(workdir, TABLE_MD))
  return results + test_results


def row_is_one_way(row: str, one_way: Collection[str]) -> bool:
  """Whether `row` (or the row whose `@time` twin it is) trains one model per direction."""
  return row.removesuffix(TIME_SUFFIX) in one_way


def _test_phase(
  base: ml_collections.ConfigDict,
  workdir: str,
  results: Sequence[Result],
  final: Sequence[str],
  seeds: Sequence[int],
  *,
  directions: Mapping[str, tuple[str | None, ...]],
  score_test: bool,
  report_only: bool,
  evaluate_fn: ablation.EvaluateFn,
  raw_path: str,
  command: str,
) -> tuple[list[Result], str]:
  """The final rows' test scores (each run's scored once, a one-way row's once per
  direction model) and the report's note."""
  if not score_test:
    return [], 'Not scored (--score_test=false): the choice is still being made.'
  if len(seeds) < MIN_SEEDS:
    return [], (
      f'Withheld: {len(seeds)} seed(s); test numbers need at least {MIN_SEEDS} '
      '(--seeds=0,1,2).'
    )
  validation = validation_scores(results)
  with open(os.path.join(workdir, SELECTION_FILE), 'w') as f:
    json.dump(
      {
        'final_rows': list(final),
        'criterion': 'mean validation PSNR over A→B and B→A',
        'scores': {n: selection_score(m) for n, m in validation.rows.items()},
      },
      f,
      indent=1,
    )
  by_run = {(r['row'], r['seed']): r for r in results}
  test_results: list[Result] = []
  new_rows = set()
  for row in final:
    ways = directions[row.removesuffix(TIME_SUFFIX)]
    for seed in seeds:
      if (row, seed) not in by_run:
        continue  # Report-only and not run.
      folders = {d: run_dir(workdir, row, seed, d) for d in ways}
      if report_only and not all(
        os.path.exists(os.path.join(f, TEST_RESULT_FILE)) for f in folders.values()
      ):
        continue
      steps = None if row == row.removesuffix(TIME_SUFFIX) else by_run[row, seed]['steps']
      parts = []
      for direction, folder in folders.items():
        config = row_config(base, row, seed, steps, direction)
        result = score_test_once(
          row, seed, config, folder, evaluate_fn=evaluate_fn, direction=direction
        )
        if result.pop('new', False):
          new_rows.add(row)
          append_raw(raw_path, run_line(result, dataset=base.dataset, command=command))
        parts.append(result)
      test_results.append(merge_directions(parts) if ways != (None,) else parts[0])
  aggregated = aggregate(test_results) if test_results else {}
  for name in final:
    if name in new_rows:
      line = row_line(
        name, aggregated[name], split='test', dataset=base.dataset, command=command
      )
      append_raw(raw_path, line)
  partial = [n for n, r in aggregated.items() if len(r['seeds']) < MIN_SEEDS]
  note = (
    f'Rows {", ".join(partial)} have fewer than {MIN_SEEDS} seeds: not results.'
    if partial
    else ''
  )
  return test_results, note


def define_flags() -> None:
  """The command's flags (defined by its entry point only, never at import)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.cli import flags as cli_flags  # pylint: disable=g-import-not-at-top

  cli_flags.define_workdir('Runs go in WORKDIR/<row>/seed_<s>; tables here.', output=True)
  flags.DEFINE_list(
    'rows',
    None,
    f'Rows to run (default: {", ".join(ROWS)}); also cut, fastcut and combinations '
    "of switches joined by '+', a method first (ema+diffaug, cut+ema).",
  )
  flags.DEFINE_list(
    'seeds',
    [str(s) for s in DEFAULT_SEEDS],
    f'Seeds each row trains with (test numbers need at least {MIN_SEEDS}).',
  )
  flags.DEFINE_integer(
    'select',
    1,
    'Final rows chosen by validation PSNR, besides paper and colour_transfer.',
  )
  flags.DEFINE_list(
    'final_rows', [], 'Rows also scored on test, chosen beforehand on validation.'
  )
  flags.DEFINE_bool(
    'score_test',
    True,
    'Score the final rows on the test split (once each); false while still choosing.',
  )
  flags.DEFINE_string(
    'results',
    None,
    'JSONL file the raw lines are appended to, e.g. '
    'benchmarks/results/cpu_looks_study_DATE.jsonl (default: WORKDIR/study.jsonl).',
  )
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
      select=f.select,
      final_rows=f.final_rows,
      score_test=f.score_test,
      results_file=f.results,
    ),
    workdir=f.workdir,
    report_files=(TABLE_MD, TABLE_JSON),
  )


def cli() -> None:
  """`cyclegan-jax-recipe-study` and `python -m cyclegan_jax.studies.recipe_study`."""
  app.run(main, prog='recipe_study', define_flags=define_flags)


if __name__ == '__main__':
  cli()
