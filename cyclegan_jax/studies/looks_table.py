"""One table over every look: each final row's test scores, from the study's raw lines.

  python -m cyclegan_jax.studies.looks_table \
      --results=benchmarks/results/cpu_looks_study_2026-12-06.jsonl [--check=improved] \
      [--split=val [--seeds=0]] [--looks=texture,shapes] [--rank]

The recipe study writes one `"kind": "row"` line per final row and look (mean and spread
over its seeds on test). This reads those lines, the newest per (look, row, steps)
winning, and prints one markdown table: per look, each row's PSNR and SSIM both ways,
its checkerboard ratio, and the *input unchanged* scores. `--check=ROW` also lists
every look and direction where ROW does not beat the paper's recipe (PSNR and SSIM) or
has a worse checkerboard ratio, and then ends in one error line (exit 1).

`--split=val` builds the same table from the validation run lines instead (mean and
spread over the seeds each row has, or over `--seeds`): the check a general recipe must
pass is then made on validation, where choices are made, before any test score.
`--rank` orders the rows as the general recipe is chosen (`ranking`): first those
that clear the texture margin over the paper, then the fewest places below it, then
the highest mean PSNR.

`--matrix=psnr` (or `ssim`) prints instead one compact table, a column per look and a
line per row (the input unchanged and the paper's first; `--rows` picks and orders the
others), each cell "A→B / B→A" as mean ± spread: the README's table.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping, Sequence

from cyclegan_jax.cli import app
from cyclegan_jax.studies import recipe_study
from cyclegan_jax.studies.recipe_study import ARROWS
from cyclegan_jax.studies.recipe_study import DIRECTIONS
from cyclegan_jax.studies.recipe_study import PAPER

# The looks in the order the docs list them; any other look follows, sorted.
LOOK_ORDER = (
  'colour',
  'tone',
  'bleach',
  'texture',
  'painterly',
  'ink',
  'shapes',
  'shapes_ranked',
)

Row = dict[str, Any]


def look_name(dataset: str) -> str:
  """'folder:/…/photo_looks_v3_72px/ink' → 'ink'; 'synthetic:shapes' → 'shapes'."""
  return os.path.basename(dataset.rstrip('/')).split(':')[-1]


def read_rows(lines: Iterable[str]) -> dict[tuple[str, str, int], Row]:
  """The test row lines by (look, row, steps); a later line replaces an earlier one."""
  rows: dict[tuple[str, str, int], Row] = {}
  for text in lines:
    if not text.strip():
      continue
    line = json.loads(text)
    if line.get('kind') != 'row' or line.get('split') != 'test':
      continue
    rows[(look_name(line['dataset']), line['row'], int(line['steps']))] = line
  return rows


def read_val_rows(
  lines: Iterable[str], seeds: Sequence[int] | None = None
) -> dict[tuple[str, str, int], Row]:
  """Validation rows by (look, row, steps), built from the `"split": "val"` run lines:
  each metric's mean and spread over the seeds (those in `seeds`, if given). A one-way
  row's two direction lines of one seed merge; a later line of a seed replaces its
  metrics. Per look only the dataset of its last line counts: an older layout's
  validation crops are another split (test crops stayed the same, so `read_rows`
  needs no such rule)."""
  found = [json.loads(text) for text in lines if text.strip()]
  found = [r for r in found if r.get('kind') == 'run' and r.get('split') == 'val']
  newest = {look_name(r['dataset']): r['dataset'] for r in found}
  runs: dict[tuple[str, str, int], dict[int, dict[str, float]]] = {}
  datasets: dict[tuple[str, str, int], str] = {}
  for line in found:
    if newest[look_name(line['dataset'])] != line['dataset']:
      continue
    if seeds is not None and line['seed'] not in seeds:
      continue
    key = (look_name(line['dataset']), line['row'], int(line['steps']))
    runs.setdefault(key, {}).setdefault(line['seed'], {}).update(line['metrics'])
    datasets[key] = line['dataset']
  rows: dict[tuple[str, str, int], Row] = {}
  for key, by_seed in runs.items():
    metrics = list(by_seed.values())
    names = set.intersection(*(set(m) for m in metrics))
    rows[key] = {
      'kind': 'row',
      'dataset': datasets[key],
      'row': key[1],
      'split': 'val',
      'steps': key[2],
      'seeds': sorted(by_seed),
      'metrics': {
        k: dict(
          zip(('mean', 'spread'), recipe_study.mean_and_spread([m[k] for m in metrics]))
        )
        for k in sorted(names)
      },
    }
  return rows


def _looks(rows: Mapping[tuple[str, str, int], Row]) -> list[str]:
  found = {look for look, _, _ in rows}
  return [n for n in LOOK_ORDER if n in found] + sorted(found - set(LOOK_ORDER))


def _cell(metrics: Mapping[str, Mapping[str, float]], key: str, digits: int) -> str:
  if key not in metrics:
    return '–'
  m = metrics[key]
  return f'{m["mean"]:.{digits}f} ± {m["spread"]:.{digits}f}'


def _identity(metrics: Mapping[str, Mapping[str, float]], key: str, digits: int) -> str:
  return f'{metrics[key]["mean"]:.{digits}f}' if key in metrics else '–'


def markdown(rows: Mapping[tuple[str, str, int], Row]) -> str:
  """One table: per look its rows (paper first), then the untranslated input."""
  header = [
    'look',
    'row',
    'steps',
    'seeds',
    *recipe_study.quality_columns(),
    *recipe_study.checkerboard_columns(),
  ]
  out = ['| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
  for look in _looks(rows):
    keys = sorted(
      (k for k in rows if k[0] == look), key=lambda k: (k[1] != PAPER, k[1], k[2])
    )
    for _, name, steps in keys:
      line = rows[(look, name, steps)]
      m = line['metrics']
      cells = [look, f'`{name}`', str(steps), str(len(line['seeds']))]
      cells += [
        _cell(m, f'{d}/{k}', n) for d in DIRECTIONS for k, n in (('psnr', 2), ('ssim', 3))
      ]
      cells += [_cell(m, f'{d}/checkerboard', 2) for d in DIRECTIONS]
      out.append('| ' + ' | '.join(cells) + ' |')
    m = rows[keys[0]]['metrics']
    cells = [look, '*input unchanged*', '–', '–']
    cells += [
      _identity(m, f'{d}/{k}_identity', n)
      for d in DIRECTIONS
      for k, n in (('psnr', 2), ('ssim', 3))
    ]
    out.append('| ' + ' | '.join(cells + ['–', '–']) + ' |')
  return '\n'.join(out) + '\n'


def _pair(m: Mapping[str, Mapping[str, float]], key: str, digits: int, seeds: int) -> str:
  """'A→B / B→A' of one metric as mean ± spread (the mean alone from one seed), or '–'
  where a direction is missing."""
  cell = _cell if seeds > 1 else _identity
  return ' / '.join(cell(m, f'{d}/{key}', digits).replace(' ± ', '±') for d in DIRECTIONS)


def matrix(
  rows: Mapping[tuple[str, str, int], Row],
  metric: str = 'psnr',
  names: Sequence[str] | None = None,
) -> str:
  """A column per look, a line per row: the input unchanged, the paper's, then `names`
  (default every other row, sorted). A row with fewer than 3 seeds says how many; at
  several step counts the longest counts."""
  digits = {'psnr': 2, 'ssim': 3}[metric]
  looks = _looks(rows)
  longest: dict[tuple[str, str], Row] = {}
  for (look, name, _), line in sorted(rows.items(), key=lambda kv: kv[0][2]):
    longest[(look, name)] = line
  others = [n for n in sorted({n for _, n in longest}) if n != PAPER]
  out = [
    f'| {metric.upper()} A→B / B→A | ' + ' | '.join(looks) + ' |',
    '|' + ' --- |' * (len(looks) + 1),
  ]
  inputs = []
  for look in looks:
    any_row = longest.get((look, PAPER)) or next(
      line for (lk, _), line in longest.items() if lk == look
    )
    m = any_row['metrics']
    inputs.append(
      ' / '.join(_identity(m, f'{d}/{metric}_identity', digits) for d in DIRECTIONS)
    )
  out.append('| *input unchanged* | ' + ' | '.join(inputs) + ' |')
  for name in [PAPER, *(others if names is None else [n for n in names if n != PAPER])]:
    cells = []
    for look in looks:
      line = longest.get((look, name))
      if line is None:
        cells.append('–')
        continue
      n = len(line['seeds'])
      cell = _pair(line['metrics'], metric, digits, n)
      cells.append(cell + (f' ({n} seed{"s" * (n > 1)})' if n < 3 else ''))
    out.append(f'| `{name}` | ' + ' | '.join(cells) + ' |')
  return '\n'.join(out) + '\n'


def paired_with_paper(
  rows: Mapping[tuple[str, str, int], Row], look: str, candidate: str
) -> list[tuple[Row, Row]]:
  """(paper's row, candidate's row) of `look` at each step count both have."""
  return [
    (rows[(look, PAPER, s)], rows[(lk, name, s)])
    for (lk, name, s) in rows
    if lk == look and name == candidate and (look, PAPER, s) in rows
  ]


# What a row must beat the paper on, per direction: (metric, higher is better).
COMPARED = (('psnr', True), ('ssim', True), ('checkerboard', False))


def _missing_and_worse(
  rows: Mapping[tuple[str, str, int], Row], candidate: str
) -> tuple[list[str], list[str]]:
  """The looks without both the paper's and `candidate`'s row, and each look, direction
  and metric where `candidate` does not beat the paper (see `shortfalls`)."""
  missing, worse = [], []
  for look in _looks(rows):
    pairs = paired_with_paper(rows, look, candidate)
    if not pairs:
      missing.append(f'{look}: no rows of both {PAPER!r} and {candidate!r}')
    for paper, row in pairs:
      for d in DIRECTIONS:
        for key, higher in COMPARED:
          p, c = (
            paper['metrics'][f'{d}/{key}']['mean'],
            row['metrics'][f'{d}/{key}']['mean'],
          )
          if (c <= p) if higher else (c > p):
            worse.append(
              f'{look} {ARROWS[d]} {key}: {candidate} {c:.4g} vs paper {p:.4g}'
            )
  return missing, worse


def shortfalls(rows: Mapping[tuple[str, str, int], Row], candidate: str) -> list[str]:
  """Where `candidate` does not beat the paper's row of the same look and steps.

  Beating means a higher mean PSNR and SSIM in both directions and a checkerboard ratio
  no higher than the paper's; a look without both rows is a shortfall too.
  """
  missing, worse = _missing_and_worse(rows, candidate)
  return missing + worse


# The margin a general recipe must clear over the paper on the texture look, A→B.
MARGIN_LOOK, PSNR_MARGIN, SSIM_MARGIN = 'texture', 1.5, 0.05


def clears_margin(rows: Mapping[tuple[str, str, int], Row], candidate: str) -> bool:
  """Whether `candidate` is at least PSNR_MARGIN dB and SSIM_MARGIN above the paper on
  MARGIN_LOOK A→B (mean over seeds), at every step count both rows have."""
  pairs = paired_with_paper(rows, MARGIN_LOOK, candidate)
  gain = lambda p, c, k: (
    c['metrics'][f'AtoB/{k}']['mean'] - p['metrics'][f'AtoB/{k}']['mean']
  )
  return bool(pairs) and all(
    gain(p, c, 'psnr') >= PSNR_MARGIN and gain(p, c, 'ssim') >= SSIM_MARGIN
    for p, c in pairs
  )


# Places a look holds: a direction × a compared metric.
PLACES_PER_LOOK = len(DIRECTIONS) * len(COMPARED)


def places_below(rows: Mapping[tuple[str, str, int], Row], candidate: str) -> int:
  """`shortfalls`, with a look the row never ran on counted as all its places: an
  unmeasured look must not rank a row above one measured there."""
  missing, worse = _missing_and_worse(rows, candidate)
  return len(worse) + len(missing) * PLACES_PER_LOOK


def ranking(
  rows: Mapping[tuple[str, str, int], Row],
) -> list[tuple[str, bool, int, float]]:
  """Every row but the paper's as (row, clears the texture margin, places below the
  paper (`places_below`), mean PSNR over its looks and both directions), best first:
  the margin, then the fewest places below, then the mean PSNR. The general recipe is
  the first row of this ranking on validation."""
  out = []
  for name in sorted({n for (_, n, _) in rows} - {PAPER}):
    psnr = [
      line['metrics'][f'{d}/psnr']['mean']
      for (_, n, _), line in rows.items()
      if n == name
      for d in DIRECTIONS
      if f'{d}/psnr' in line['metrics']
    ]
    out.append(
      (
        name,
        clears_margin(rows, name),
        places_below(rows, name),
        sum(psnr) / len(psnr),
      )
    )
  return sorted(out, key=lambda r: (not r[1], r[2], -r[3]))


def read_files(
  paths: Sequence[str], split: str = 'test', seeds: Sequence[int] | None = None
) -> dict[tuple[str, str, int], Row]:
  """`read_rows` (test) or `read_val_rows` (val) over the files in order, so a later
  file's line wins."""
  lines: list[str] = []
  for path in paths:
    if not os.path.isfile(path):
      raise app.UsageError(f"No results file {path}; pass the study's --results files.")
    with open(path, encoding='utf-8') as f:
      lines.extend(f)
  return read_val_rows(lines, seeds) if split == 'val' else read_rows(lines)


def define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top

  flags.DEFINE_list('results', None, "The recipe study's --results files (JSONL).")
  flags.DEFINE_string('check', None, 'A row that must beat the paper on every look.')
  flags.DEFINE_string('out', None, 'Also write the table to this markdown file.')
  flags.DEFINE_enum(
    'split', 'test', ['test', 'val'], 'test: the final rows; val: the validation runs.'
  )
  flags.DEFINE_list('seeds', None, 'With --split=val: only these seeds (default all).')
  flags.DEFINE_list('looks', None, 'Only these looks (default every look in the files).')
  flags.DEFINE_bool(
    'rank', False, 'Also rank the rows: the texture margin, fewest shortfalls, PSNR.'
  )
  flags.DEFINE_enum(
    'matrix', None, ['psnr', 'ssim'], 'Print the compact look-by-row table of a metric.'
  )
  flags.DEFINE_list('rows', None, 'With --matrix: these rows after the paper, in order.')
  flags.mark_flags_as_required(['results'])


def main(argv: Sequence[str]) -> app.Outcome:
  from absl import flags  # pylint: disable=g-import-not-at-top

  app.no_arguments(argv)
  f = flags.FLAGS
  seeds = [int(s) for s in f.seeds] if f.seeds else None
  rows = read_files(f.results, f.split, seeds)
  if f.looks:
    rows = {key: row for key, row in rows.items() if key[0] in f.looks}
  if not rows:
    raise ValueError(
      'No validation run lines in the results; run the study first.'
      if f.split == 'val'
      else 'No test row lines in the results; run the study with 3 seeds first.'
    )
  table = matrix(rows, f.matrix, f.rows) if f.matrix else markdown(rows)
  print(table, end='')
  if f.out:
    with open(f.out, 'w', encoding='utf-8') as out:
      out.write(table)
  if f.rank:
    print(
      f'\n| rank | row | +{PSNR_MARGIN} dB, +{SSIM_MARGIN} SSIM on {MARGIN_LOOK} A→B '
      '| places below the paper | mean PSNR |\n| --- | --- | --- | --- | --- |'
    )
    for i, (name, margin, short_count, psnr) in enumerate(ranking(rows), 1):
      print(
        f'| {i} | `{name}` | {"yes" if margin else "no"} | {short_count} | {psnr:.2f} |'
      )
  short = shortfalls(rows, f.check) if f.check else []
  for line in short:
    print(f'short: {line}')
  if short:
    raise ValueError(
      f'{f.check} falls short of the paper in {len(short)} place(s) (listed above).'
    )
  looks = _looks(rows)
  return app.Outcome(
    line=f'{len(rows)} rows over {len(looks)} looks'
    + (f'; {f.check} beats the paper on all' if f.check else ''),
    data={'rows': len(rows), 'looks': looks, 'check': f.check},
  )


def cli() -> None:
  """`python -m cyclegan_jax.studies.looks_table`."""
  app.run(main, prog='looks_table', define_flags=define_flags)


if __name__ == '__main__':
  cli()
