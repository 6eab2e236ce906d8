"""The comparison's tables (Tables 1-3): per row the mean ± s.d. over seeds, as Markdown
and JSON.

`build` turns the runs' results into the three tables; `write` writes them into the
workdir (`compare.md`, `compare.json`, with the command). Pure Python and numpy.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import ml_collections

from cyclegan_jax.studies import ablation
from cyclegan_jax.studies import runner

TABLE_MD = 'compare.md'
TABLE_JSON = 'compare.json'
_ARROWS = {'AtoB': 'A→B', 'BtoA': 'B→A'}
SCORES = (('pixel_acc', 'per-pixel acc.'), ('class_acc', 'per-class acc.'),
          ('class_iou', 'class IoU'))  # fmt: skip
# Table → (its score key in a result, the direction whose runs fill it).
LABEL_TABLES = {
  'table2': ('labels_to_photo', 'BtoA'),
  'table3': ('photo_to_labels', 'AtoB'),
}

# The paper's class IoU on Cityscapes (Zhu et al. 2017, arXiv v7, Table 2 labels→photo
# and Table 3 photo→labels), by paper row, printed for orientation only: another
# dataset, resolution, network and training length than any run here.
PAPER_CLASS_IOU = {
  'table2': {'CoGAN': 0.06, 'BiGAN/ALI': 0.02, 'SimGAN': 0.04,
             'Feature loss + GAN': 0.01, 'CycleGAN': 0.11, 'pix2pix': 0.18},
  'table3': {'CoGAN': 0.08, 'BiGAN/ALI': 0.07, 'SimGAN': 0.07,
             'Feature loss + GAN': 0.06, 'CycleGAN': 0.16, 'pix2pix': 0.32},
}  # fmt: skip

Result = dict[str, Any]


@dataclasses.dataclass
class Tables:
  """The comparison as written: the Markdown, the JSON summary and the runs' results."""

  markdown: str
  summary: dict[str, Any]
  runs: list[Result]


def mean_sd(values: Sequence[float]) -> dict[str, Any]:
  """{'mean', 'sd' (sample s.d.; None for one value), 'n'} of `values`."""
  n = len(values)
  mean = sum(values) / n
  sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
  return {'mean': mean, 'sd': sd, 'n': n}


def cell(stats: Mapping[str, Any] | None, digits: int) -> str:
  """'0.123 ± 0.004' (one seed: '0.123'; no value: '–')."""
  if not stats:
    return '–'
  text = f'{stats["mean"]:.{digits}f}'
  return text if stats['sd'] is None else f'{text} ± {stats["sd"]:.{digits}f}'


def per_seed(results: Sequence[Result]) -> dict[int, dict[str, Any]]:
  """Seed → the row's metrics and scores at that seed, merged over its runs (a one-way
  row has one run per direction, each evaluating its own)."""
  merged: dict[int, dict[str, Any]] = {}
  for r in results:
    seed = merged.setdefault(
      r['seed'], {'metrics': {}, 'scores': {}, 'steps': [], 'wall_s': 0.0}
    )
    seed['metrics'].update(r['metrics'])
    seed['scores'].update(r['scores'])
    seed['steps'].append(r['steps'])
    seed['wall_s'] += r['wall_s']
  return merged


def _stats(values: Sequence[float | None]) -> dict[str, Any] | None:
  present = [v for v in values if v is not None]
  return mean_sd(present) if present else None


def row_summary(results: Sequence[Result], fid: bool) -> dict[str, Any]:
  """One row's statistics over seeds: Table 1's metrics and Tables 2-3's scores."""
  seeds = per_seed(results)
  keys = [f'{d}/{k}' for d in _ARROWS for k in ('psnr', 'ssim')]
  if fid:
    keys += [f'{d}/{k}' for d in _ARROWS for k in ('fid', 'kid_mean')]
  table1 = {k: _stats([s['metrics'].get(k) for s in seeds.values()]) for k in keys}
  out: dict[str, Any] = {
    'seeds': sorted(seeds),
    'steps': sorted({n for s in seeds.values() for n in s['steps']}),
    'wall_s': _stats([s['wall_s'] for s in seeds.values()]),
    'table1': table1,
  }
  for table, (score, _) in LABEL_TABLES.items():
    out[table] = {
      k: _stats([s['scores'][score][k] for s in seeds.values() if score in s['scores']])
      for k, _ in SCORES
    }
  return out


def build(
  rows: Mapping[str, tuple[str, str]],
  seeds: Sequence[int],
  results: Sequence[Result],
  *,
  skipped: Mapping[str, str],
  missing: Mapping[str, Mapping[str, str]],
  ceiling: Mapping[str, Any] | None,
  fid: bool,
  labelled: bool = True,
  inputs: Mapping[str, Any] | None = None,
) -> Tables:
  """The three tables of the rows (in the given order) from the finished runs' results.

  Args:
    rows: the requested rows in order: name → (the paper's label, the method).
    seeds: the requested seeds.
    results: the finished runs' results (`compare.run_one`).
    skipped: row → why it does not run.
    missing: row → {direction: why it has no run}.
    ceiling: the segmenter's scores on the real photos (None: not yet or unlabelled).
    fid: whether FID/KID were asked for (Inception weights given).
    labelled: whether the benchmark has Cityscapes labels (Tables 2 and 3 apply).
    inputs: the test inputs left unchanged, scored as a translation would be
      (`compare.input_scores`): {'table1': {'AtoB/psnr': v, ...}, 'table2': scores,
      'table3': scores}, each part absent until a run has evaluated its direction.
  """
  summaries = []
  for name, (label, method) in rows.items():
    mine = [r for r in results if r['row'] == name]
    entry = {
      'row': name,
      'label': label,
      'method': method,
      'not_run': skipped.get(name),
      'missing': dict(missing.get(name, {})),
      **row_summary(mine, fid),
    }
    summaries.append(entry)
  summary = {
    'seeds': list(seeds),
    'rows': summaries,
    'ceiling': dict(ceiling) if ceiling is not None else None,
    'inputs': dict(inputs or {}),
    'fid': fid,
    'labelled': labelled,
  }
  return Tables('', summary, list(results))


# --------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------


def _note(row: Mapping[str, Any], directions: Sequence[str]) -> str:
  if row['not_run']:
    return row['not_run']
  notes = [
    f'{_ARROWS[d]}: {row["missing"][d]}' for d in directions if d in row['missing']
  ]
  return '; '.join(notes)


def _seeds_cell(row: Mapping[str, Any]) -> str:
  return str(len(row['seeds'])) if row['seeds'] else '–'


def _table(header: list[str], lines: list[list[str]]) -> str:
  out = [
    '| ' + ' | '.join(header) + ' |',
    '| ' + ' | '.join('---' for _ in header) + ' |',
  ]
  out += ['| ' + ' | '.join(line) + ' |' for line in lines]
  return '\n'.join(out) + '\n'


INPUT_ROW = ('*input unchanged*', 'Identity')


def table1_markdown(
  rows: Sequence[Mapping[str, Any]],
  fid: bool,
  inputs: Mapping[str, float] | None = None,
) -> str:
  """Realism: PSNR / SSIM (and FID / KID) per direction; the input unchanged first."""
  keys = [(f'{d}/{k}', f'{_ARROWS[d]} {name}', n) for d in _ARROWS
          for k, name, n in (('psnr', 'PSNR', 2), ('ssim', 'SSIM', 3))]  # fmt: skip
  if fid:
    keys += [(f'{d}/fid', f'{_ARROWS[d]} FID', 2) for d in _ARROWS]
    keys += [(f'{d}/kid_mean', f'{_ARROWS[d]} KID', 4) for d in _ARROWS]
  header = ['row', 'paper row', 'seeds', *[k[1] for k in keys], 'wall time', 'note']
  lines = []
  if inputs:
    lines.append(
      [
        *INPUT_ROW,
        '–',
        *[f'{inputs[k]:.{n}f}' if k in inputs else '–' for k, _, n in keys],
        '–',
        'the test input itself against the truth: the score to beat',
      ]
    )
  for row in rows:
    wall = row['wall_s']
    lines.append(
      [
        f'`{row["row"]}`',
        row['label'],
        _seeds_cell(row),
        *[cell(row['table1'].get(k), n) for k, _, n in keys],
        ablation.duration(wall['mean']) if wall else '–',
        _note(row, list(_ARROWS)),
      ]
    )
  return _table(header, lines)


def label_table_markdown(
  rows: Sequence[Mapping[str, Any]],
  table: str,
  ceiling: Mapping[str, Any] | None = None,
  inputs: Mapping[str, Any] | None = None,
) -> str:
  """Table 2 or 3: the three segmentation scores per row, after the ceiling (Table 2)
  and the input left unchanged."""
  direction = LABEL_TABLES[table][1]
  header = ['row', 'paper row', 'seeds', *[name for _, name in SCORES]]
  header += ["paper's Cityscapes class IoU", 'note']
  paper = PAPER_CLASS_IOU[table]
  lines = []
  if ceiling is not None:
    lines.append(
      [
        '*real photos*',
        'Ground truth',
        '–',
        *[f'{ceiling[k]:.3f}' for k, _ in SCORES],
        '–',
        'the segmenter on the real test photos: the ceiling',
      ]
    )
  if inputs:
    lines.append(
      [
        *INPUT_ROW,
        '–',
        *[f'{inputs[k]:.3f}' for k, _ in SCORES],
        '–',
        'the test input itself, scored as a translation: the score to beat',
      ]
    )
  for row in rows:
    lines.append(
      [
        f'`{row["row"]}`',
        row['label'],
        _seeds_cell(row),
        *[cell(row[table][k], 3) for k, _ in SCORES],
        f'{paper[row["label"]]:.2f}' if row['label'] in paper else '–',
        _note(row, [direction]),
      ]
    )
  return _table(header, lines)


def ranking(rows: Sequence[Mapping[str, Any]], table: str) -> str:
  """'pix2pix > CycleGAN > ...': the rows with a score, by mean class IoU."""
  scored = [
    (r[table]['class_iou']['mean'], r['label']) for r in rows if r[table]['class_iou']
  ]
  scored.sort(key=lambda x: -x[0])
  return ' > '.join(f'{label} ({v:.3f})' for v, label in scored)


def markdown(
  summary: Mapping[str, Any], *, dataset: str, command: str, segmenter: str | None
) -> str:
  """`compare.md`: the command, the three tables and what their columns mean."""
  rows = summary['rows']
  seeds = ', '.join(str(s) for s in summary['seeds'])
  parts = [
    f'# Method comparison on `{dataset}`',
    '',
    '```bash',
    command,
    '```',
    '',
    f'Seeds {seeds}; each cell is the mean ± sample standard deviation over the seeds '
    "that finished (the 'seeds' column), a single value for one seed.",
    '',
    '## Table 1: realism',
    '',
    table1_markdown(rows, summary['fid'], summary.get('inputs', {}).get('table1')),
    'PSNR (dB) and SSIM of each translation against its true counterpart, on 8-bit '
    '[0, 1] images. Wall time: training (with compilation) and evaluation of '
    "one seed, summed over a row's runs."
    + (
      ' FID and KID against the real test images of the target domain, with '
      "pytorch-fid's Inception network."
      if summary['fid']
      else ' FID/KID: not run: no Inception weights (pass --inception_weights=PATH or '
      'set $CYCLEGAN_JAX_INCEPTION_WEIGHTS).'
    ),
    '',
  ]
  if summary['labelled']:
    parts += [
      '## Table 2: labels → photo (B→A), FCN-score',
      '',
      label_table_markdown(
        rows, 'table2', summary['ceiling'], summary.get('inputs', {}).get('table2')
      ),
      "Each generated photo is segmented by the benchmark's segmenter and its labels "
      'scored against the label map it was generated from'
      + (f' (segmenter `{segmenter}`).' if segmenter else '.'),
      '',
      f'By class IoU: {ranking(rows, "table2") or "–"}.',
      '',
      '## Table 3: photo → labels (A→B)',
      '',
      label_table_markdown(
        rows, 'table3', inputs=summary.get('inputs', {}).get('table3')
      ),
      'Each generated label map is read by its nearest Cityscapes class colour and '
      'scored against the true labels.',
      '',
      f'By class IoU: {ranking(rows, "table3") or "–"}.',
      '',
      "The paper's column is Zhu et al. 2017's class IoU on Cityscapes (Tables 2 and "
      '3), for orientation only: its data, resolution, networks and training differ '
      'from these runs; compare the order of the rows, not the values.',
      '',
    ]
  else:
    parts += [
      'Tables 2 and 3 (segmentation scores) need Cityscapes label maps: '
      '`synthetic:streets` or a cityscapes folder (`folder:PATH`).',
      '',
    ]
  return '\n'.join(parts)


def write(
  workdir: str,
  tables: Tables,
  *,
  base: ml_collections.ConfigDict,
  command: str,
  segmenter: str | None,
  runs: Sequence[Result],
) -> None:
  """Writes WORKDIR/compare.md and WORKDIR/compare.json (and fills `tables.markdown`)."""
  tables.markdown = markdown(
    tables.summary, dataset=base.dataset, command=command, segmenter=segmenter
  )
  runner.write_report(
    workdir,
    markdown_name=TABLE_MD,
    markdown=tables.markdown,
    json_name=TABLE_JSON,
    summary={
      **tables.summary,
      'segmenter': segmenter,
      'total_wall_s': round(sum(r['wall_s'] for r in runs), 1),
      'runs': [{k: v for k, v in r.items() if k != 'config'} for r in runs],
    },
    base=base,
    command=command,
  )
