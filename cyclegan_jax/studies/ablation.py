"""The paper's loss ablation (Tables 4 and 5): train and evaluate each row, tabulate them.

  python -m cyclegan_jax.studies.ablation --workdir=/tmp/cyclegan_ablation \
      [--variants=cycle_alone,cyclegan] [--config=configs/ablation.py] \
      [--config.num_train_steps=300 --config.dataset=synthetic:colors ...]

`--config` is the *base*: the full objective (default `configs/ablation.py`, the CPU
miniature); `--config.FIELD=VALUE` overrides it for every row. Each row switches off its
loss terms on a copy of the base (`VARIANTS`), trains in DIR/<row> with
`train.train_and_evaluate`, is evaluated with `evaluate.evaluate`, and lands in

  DIR/ablation.md     one Markdown table: per row the steps, PSNR/SSIM against the ground
                      truth per direction (where the test split has one), the cycle L1
                      per direction, the wall time; plus the input-unchanged baseline row
  DIR/ablation.json   the same numbers, the row configs, timings and machine load

Both are rewritten after every row. Running the same command again resumes: a finished
row (DIR/<row>/ablation_result.json) is skipped and its results are re-read; an
interrupted row resumes training from its last checkpoint (its wall time then counts the
last call only, and `resumed_from_step` says so). A row directory that was run with
another config is an error, not a silent mix.

This module's top level imports no JAX, so config files can import `VARIANTS` cheaply.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import time
from typing import Any, Callable, Sequence

from absl import logging
import ml_collections

from cyclegan_jax.cli import app
from cyclegan_jax.cli import config_checks
from cyclegan_jax.cli import errors
from cyclegan_jax.studies import runner

# Row name → the `config.loss` weights it sets to 0, in the paper's row order.
VARIANTS: dict[str, tuple[str, ...]] = {
  'cycle_alone': ('lambda_gan',),
  'gan_alone': ('lambda_A', 'lambda_B'),
  'gan_forward': ('lambda_B',),
  'gan_backward': ('lambda_A',),
  'cyclegan': (),
}
# The paper's label of each row (Tables 4 and 5).
PAPER_ROWS: dict[str, str] = {
  'cycle_alone': 'Cycle alone',
  'gan_alone': 'GAN alone',
  'gan_forward': 'GAN + forward cycle',
  'gan_backward': 'GAN + backward cycle',
  'cyclegan': 'CycleGAN',
}
SWITCHES = ('lambda_gan', 'lambda_A', 'lambda_B')
RESULT_FILE = 'ablation_result.json'
TABLE_MD = 'ablation.md'
TABLE_JSON = 'ablation.json'
DIRECTIONS = ('AtoB', 'BtoA')
_ARROWS = {'AtoB': 'A→B', 'BtoA': 'B→A'}
_CYCLES = {'AtoB': 'A→B→A', 'BtoA': 'B→A→B'}

Result = dict[str, Any]
TrainFn = Callable[[ml_collections.ConfigDict, str], Any]
EvaluateFn = Callable[[ml_collections.ConfigDict, str], dict[str, float]]


# --------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------


def check_variant(name: str) -> None:
  """Raises ValueError, listing the valid rows, when `name` is not one."""
  if name not in VARIANTS:
    raise ValueError(f'Unknown ablation variant {name!r}; valid: {", ".join(VARIANTS)}.')


def apply_variant(
  config: ml_collections.ConfigDict, name: str
) -> ml_collections.ConfigDict:
  """Switches off, in place, the loss terms that row `name` removes; returns `config`."""
  check_variant(name)
  for weight in VARIANTS[name]:
    config.loss[weight] = 0.0
  return config


def check_base(config: ml_collections.ConfigDict) -> None:
  """The base must be the full objective, or the `cyclegan` row would not be."""
  off = [w for w in SWITCHES if config.loss[w] == 0]
  if off:
    raise ValueError(
      'The ablation base config must be the full objective, but it has '
      + ', '.join(f'loss.{w} = 0' for w in off)
      + '. Give the config file without a variant (e.g. --config=configs/ablation.py) '
      'and pick rows with --variants.'
    )


def variant_config(
  base: ml_collections.ConfigDict, name: str
) -> ml_collections.ConfigDict:
  """A copy of `base` (still locked) with row `name`'s terms switched off."""
  return apply_variant(copy.deepcopy(base), name)


def parse_variants(names: Sequence[str] | None) -> list[str]:
  """The requested rows in the paper's order (None or empty: all five)."""
  if not names:
    return list(VARIANTS)
  for name in names:
    check_variant(name)
  return [v for v in VARIANTS if v in set(names)]


# --------------------------------------------------------------------------------------
# Running one row
# --------------------------------------------------------------------------------------


def _flatten(tree: dict[str, Any], prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
  """The dotted fields in which two config dicts differ."""
  fa, fb = _flatten(a), _flatten(b)
  return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def _checkpoint_steps(workdir: str) -> list[int]:
  path = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(path):
    return []
  return sorted(int(d) for d in os.listdir(path) if d.isdigit())


def _jsonable(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(json.dumps(config.to_dict()))


def _default_config() -> ml_collections.ConfigDict:
  from configs import default  # pylint: disable=g-import-not-at-top

  return default.get_config()


def changed_fields(
  saved: dict[str, Any],
  config: ml_collections.ConfigDict,
  ignore: Sequence[str] = (),
) -> list[str]:
  """The dotted fields in which `config` differs from a finished run's saved config,
  but for `ignore`, a field added to the code after the run that `config` leaves at
  its default, and a field removed since at its neutral value
  (`config_checks.REMOVED_NEUTRAL`): neither changes anything the run did."""
  now = _flatten(_jsonable(config))
  saved_flat = _flatten(saved)
  defaults = _flatten(_jsonable(_default_config()))
  neutral = config_checks.REMOVED_NEUTRAL

  def changed(k: str) -> bool:
    if k in saved_flat and k not in now:  # Removed from the code since the run.
      return k not in neutral or saved_flat[k] != neutral[k]
    return k in saved_flat or now.get(k) != defaults.get(k)

  return [
    k
    for k in config_differences(saved, _jsonable(config))
    if k not in ignore and changed(k)
  ]


def load_result(workdir: str, config: ml_collections.ConfigDict) -> Result | None:
  """The saved result of a finished row, or None if the row has not finished.

  Raises:
    ValueError: the row finished with another config.
  """
  path = os.path.join(workdir, RESULT_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    result = json.load(f)
  differ = changed_fields(result['config'], config)
  if differ:
    raise ValueError(
      f'{workdir} holds a finished run with another config (it differs in '
      f'{", ".join(differ)}). Use another --workdir, or delete that directory to '
      'rerun the row.'
    )
  return result


def _load_averages() -> list[float] | None:
  try:
    return [round(x, 2) for x in os.getloadavg()]
  except OSError:
    return None


def _final_step(state: Any) -> int:
  import numpy as np  # pylint: disable=g-import-not-at-top

  return int(np.asarray(state.step.addressable_shards[0].data))


# Seconds spent training so far in a workdir, summed over the calls that resumed it:
# a run resumed at its last step otherwise reports the seconds of a call that trained
# nothing.
TRAIN_SECONDS_FILE = 'train_seconds.json'


def _train_seconds_before(workdir: str) -> float:
  path = os.path.join(workdir, TRAIN_SECONDS_FILE)
  if not os.path.exists(path):
    return 0.0
  with open(path) as f:
    return float(json.load(f)['train_s'])


def _save_train_seconds(workdir: str, seconds: float) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, TRAIN_SECONDS_FILE), 'w') as f:
    json.dump({'train_s': round(seconds, 1)}, f)


class StoppedEarly(ValueError):
  """A run's training loop stopped on a signal before its last step."""


def train_and_score(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  train_fn: TrainFn,
  evaluate_fn: EvaluateFn,
) -> Result:
  """Trains (or resumes) `config` in `workdir`, evaluates it; returns what was measured.

  The result has the final step, the metrics, the training seconds (summed over every
  call that trained the run, `TRAIN_SECONDS_FILE`) and evaluation seconds, the resumed
  step (None: a fresh run), the load averages around it and the config.
  """
  resumed = _checkpoint_steps(workdir)
  if resumed:
    logging.info('Resuming from checkpoint %d in %s.', resumed[-1], workdir)
  load_start = _load_averages()
  before = _train_seconds_before(workdir) if resumed else 0.0
  start = time.perf_counter()
  state = train_fn(config, workdir)
  train_s = time.perf_counter() - start
  _save_train_seconds(workdir, before + train_s)
  if config.num_train_steps > 0 and _final_step(state) < config.num_train_steps:
    # The loop saved and stopped on a signal: scoring a half-trained run as finished
    # would put it in the table; its checkpoint resumes on the next call instead.
    raise StoppedEarly(
      f'Training in {workdir} stopped at step {_final_step(state)} of '
      f'{config.num_train_steps} (a signal); run the same command to resume it.'
    )
  metrics = evaluate_fn(config, workdir)
  eval_s = time.perf_counter() - start - train_s
  return {
    'steps': _final_step(state),
    'metrics': {k: float(v) for k, v in metrics.items()},
    'train_s': round(before + train_s, 1),  # Every call that trained this run.
    'eval_s': round(eval_s, 1),
    'wall_s': round(before + train_s + eval_s, 1),
    'resumed_from_step': resumed[-1] if resumed else None,
    'load_avg_start': load_start,
    'load_avg_end': _load_averages(),
    'finished_utc': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'config': _jsonable(config),
  }


def save_result(workdir: str, result: Result) -> None:
  """Writes `result` as the finished-run marker that `load_result` reads."""
  with open(os.path.join(workdir, RESULT_FILE), 'w') as f:
    json.dump(result, f, indent=1)


def run_variant(
  name: str,
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  train_fn: TrainFn,
  evaluate_fn: EvaluateFn,
) -> Result:
  """Trains (or resumes) and evaluates one row in `workdir`; saves and returns its result."""
  scored = train_and_score(config, workdir, train_fn=train_fn, evaluate_fn=evaluate_fn)
  result = {
    'variant': name,
    'paper_row': PAPER_ROWS[name],
    'loss': {k: float(config.loss[k]) for k in SWITCHES + ('lambda_identity',)},
    **scored,
  }
  save_result(workdir, result)
  return result


# --------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------


def _num(metrics: dict[str, float], key: str, digits: int) -> str:
  return f'{metrics[key]:.{digits}f}' if key in metrics else '–'


def duration(seconds: float) -> str:
  """'m:ss'."""
  minutes, secs = divmod(int(round(seconds)), 60)
  return f'{minutes}:{secs:02d}'


def _has_fid(results: Sequence[Result]) -> bool:
  """Whether the rows were evaluated with Inception weights (FID/KID columns)."""
  return any(f'{d}/fid' in r['metrics'] for r in results for d in DIRECTIONS)


def table_header(results: Sequence[Result] = ()) -> list[str]:
  """The Markdown table's column names (FID columns when `results` have FID)."""
  quality = [f'{_ARROWS[d]} {m}' for d in DIRECTIONS for m in ('PSNR', 'SSIM')]
  cycles = [f'cycle L1 {_CYCLES[d]}' for d in DIRECTIONS]
  fids = [f'{_ARROWS[d]} FID' for d in DIRECTIONS] if _has_fid(results) else []
  return ['variant', 'paper row', 'steps', *quality, *cycles, *fids, 'wall time']


def table_rows(results: Sequence[Result]) -> list[list[str]]:
  """One row per result, then the input-unchanged baseline (where there is ground truth)."""
  rows = []
  for r in results:
    m = r['metrics']
    quality = [
      _num(m, f'{d}/{k}', n) for d in DIRECTIONS for k, n in (('psnr', 2), ('ssim', 3))
    ]
    cycles = [_num(m, f'{d}/cycle_l1', 3) for d in DIRECTIONS]
    fids = [_num(m, f'{d}/fid', 2) for d in DIRECTIONS] if _has_fid(results) else []
    wall = duration(r['wall_s']) + ('*' if r.get('resumed_from_step') is not None else '')
    rows.append(
      [
        f'`{r["variant"]}`',
        r['paper_row'],
        str(r['steps']),
        *quality,
        *cycles,
        *fids,
        wall,
      ]
    )
  if results and any(f'{d}/psnr_identity' in results[0]['metrics'] for d in DIRECTIONS):
    m = results[0]['metrics']
    baseline = [
      _num(m, f'{d}/{k}_identity', n)
      for d in DIRECTIONS
      for k, n in (('psnr', 2), ('ssim', 3))
    ]
    fids = ['–'] * len(DIRECTIONS) if _has_fid(results) else []
    rows.append(
      ['*input unchanged*', 'identity baseline', '–', *baseline, '–', '–', *fids, '–']
    )
  return rows


def markdown_table(results: Sequence[Result]) -> str:
  """The rows as a Markdown table."""
  header = table_header(results)
  lines = [
    '| ' + ' | '.join(header) + ' |',
    '| ' + ' | '.join('---' for _ in header) + ' |',
  ]
  lines += ['| ' + ' | '.join(row) + ' |' for row in table_rows(results)]
  return '\n'.join(lines) + '\n'


def markdown_report(results: Sequence[Result], *, dataset: str, command: str) -> str:
  """`ablation.md`: the command, the table and what its columns mean."""
  notes = [
    f'# Loss ablation on `{dataset}`',
    '',
    '```bash',
    command,
    '```',
    '',
    markdown_table(results),
    'PSNR (dB) and SSIM of the translation against the ground truth of each test image, '
    'on 8-bit [0, 1] images; *input unchanged* scores the untranslated input the same '
    'way. Cycle L1: mean |F(G(x)) − x| in [-1, 1] units. Wall time: training (with '
    'compilation) plus evaluation.',
  ]
  if _has_fid(results):
    notes.append(
      'FID: of the translations against the real images of the target domain '
      "(`eval.fid_reference` split), with pytorch-fid's Inception network; "
      'KID is in ablation.json.'
    )
  if any(r.get('resumed_from_step') is not None for r in results):
    notes.append(
      '\\* resumed from a checkpoint: the wall time covers the last call only.'
    )
  loads = [r['load_avg_start'][0] for r in results if r.get('load_avg_start')]
  if loads:
    notes.append(
      f'{os.cpu_count()} CPUs; 1-minute load average at the start of the rows: '
      + ', '.join(f'{x:.1f}' for x in loads)
      + '.'
    )
  return '\n'.join(notes) + '\n'


def write_tables(
  workdir: str,
  results: Sequence[Result],
  *,
  base: ml_collections.ConfigDict,
  command: str,
) -> None:
  """Writes DIR/ablation.md and DIR/ablation.json."""
  runner.write_report(
    workdir,
    markdown_name=TABLE_MD,
    markdown=markdown_report(results, dataset=base.dataset, command=command),
    json_name=TABLE_JSON,
    summary={
      'total_wall_s': round(sum(r['wall_s'] for r in results), 1),
      'columns': table_header(results),
      'variants': [{k: v for k, v in r.items() if k != 'config'} for r in results],
    },
    base=base,
    command=command,
  )


# --------------------------------------------------------------------------------------
# All rows
# --------------------------------------------------------------------------------------


def run_ablation(
  base: ml_collections.ConfigDict,
  workdir: str,
  variants: Sequence[str] | None = None,
  *,
  command: str = '',
  train_fn: TrainFn | None = None,
  evaluate_fn: EvaluateFn | None = None,
) -> list[Result]:
  """Trains and evaluates each row on top of `base`; writes and returns the table.

  Args:
    base: the full objective; each row switches some of its loss terms off.
    workdir: row `v` trains in `workdir/v`; the tables go in `workdir`.
    variants: rows to run (None: all five), run in the paper's order.
    command: the command line, recorded in the tables.
    train_fn: `train.train_and_evaluate` unless given (for tests).
    evaluate_fn: `evaluate.evaluate` unless given (for tests).

  Returns:
    One result dict per row, in the paper's order.

  Raises:
    ValueError: an unknown row, a base that is not the full objective, or a finished
      row directory with another config.
  """
  config_checks.validate(base)
  check_base(base)
  names = parse_variants(variants)
  for name in names:  # Every row's config, before hours are spent on the first.
    config_checks.validate(variant_config(base, name))
  if train_fn is None:
    from cyclegan_jax.train import loop as train  # pylint: disable=g-import-not-at-top

    train_fn = train.train_and_evaluate
  if evaluate_fn is None:
    from cyclegan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

    evaluate_fn = evaluate.evaluate
  errors.check_writable_folder(workdir, '--workdir')
  results: list[Result] = []
  progress = runner.run_progress(len(names), 'ablation')
  for name in names:
    config = variant_config(base, name)
    row_dir = os.path.join(workdir, name)
    result = load_result(row_dir, config)
    if result is not None:
      logging.info('%s: finished before (%s); re-read its results.', name, row_dir)
    else:
      logging.info(
        '%s: training %s steps in %s (%s).',
        name,
        config.num_train_steps,
        row_dir,
        ', '.join(f'{k}={config.loss[k]:g}' for k in SWITCHES),
      )
      result = run_variant(
        name, config, row_dir, train_fn=train_fn, evaluate_fn=evaluate_fn
      )
      logging.info('%s: done in %.0f s: %s', name, result['wall_s'], result['metrics'])
    results.append(result)
    write_tables(workdir, results, base=base, command=command)
    progress.advance()
  logging.info(
    'Wrote %s and %s.', os.path.join(workdir, TABLE_MD), os.path.join(workdir, TABLE_JSON)
  )
  return results


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def define_flags() -> None:
  """The command's flags (defined by its entry point only: config files import this)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.cli import flags as cli_flags  # pylint: disable=g-import-not-at-top

  default_config = runner.repo_config('ablation.py')
  cli_flags.define_workdir(
    'Rows train in WORKDIR/<variant>; the tables go here.', output=True
  )
  flags.DEFINE_list(
    'variants', None, f'Rows to run (default: all), from: {", ".join(VARIANTS)}.'
  )
  config_flags.DEFINE_config_file(
    'config',
    default_config,
    'The base config: the full objective (each row switches terms off).',
    lock_config=True,
  )


def main(argv: Sequence[str]) -> app.Outcome:
  from absl import flags  # pylint: disable=g-import-not-at-top

  f = flags.FLAGS
  check_base(f.config)
  parse_variants(f.variants)
  return runner.study_main(
    argv,
    module='cyclegan_jax.studies.ablation',
    study=lambda command: run_ablation(f.config, f.workdir, f.variants, command=command),
    workdir=f.workdir,
    report_files=(TABLE_MD, TABLE_JSON),
  )


def cli() -> None:
  """`cyclegan-jax-ablation` and `python -m cyclegan_jax.studies.ablation`."""
  app.run(main, prog='ablation', define_flags=define_flags)


if __name__ == '__main__':
  cli()
