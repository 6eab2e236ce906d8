"""The table over looks: newest line wins, input row, and where a row falls short."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cyclegan_jax.studies import looks_table


def _line(
  look: str, row: str, psnr: float, *, split='test', steps=2000, kind='row', cb=1.0
):
  metrics = {}
  for d, shift in (('AtoB', 0.0), ('BtoA', -1.0)):
    metrics[f'{d}/psnr'] = {'mean': psnr + shift, 'spread': 0.1}
    metrics[f'{d}/ssim'] = {'mean': psnr / 40, 'spread': 0.01}
    metrics[f'{d}/psnr_identity'] = {'mean': 11.0, 'spread': 0.0}
    metrics[f'{d}/ssim_identity'] = {'mean': 0.5, 'spread': 0.0}
    metrics[f'{d}/checkerboard'] = {'mean': cb, 'spread': 0.2}
  dataset = (
    'synthetic:shapes' if look == 'shapes' else f'folder:/data/photo_looks_v3_72px/{look}'
  )
  return json.dumps(
    {
      'kind': kind,
      'dataset': dataset,
      'row': row,
      'split': split,
      'steps': steps,
      'seeds': [0, 1, 2],
      'metrics': metrics,
    }
  )


def test_look_names():
  assert looks_table.look_name('folder:/a/photo_looks_v3_72px/ink') == 'ink'
  assert looks_table.look_name('folder:/a/b/texture/') == 'texture'
  assert looks_table.look_name('synthetic:shapes') == 'shapes'


def test_only_test_row_lines_count_and_the_newest_wins():
  rows = looks_table.read_rows(
    [
      _line('ink', 'paper', 12.0),
      _line('ink', 'paper', 13.0),
      _line('ink', 'ema', 30.0, split='val'),
      _line('ink', 'ema', 30.0, kind='run'),
      '',
    ]
  )
  assert list(rows) == [('ink', 'paper', 2000)]
  assert rows[('ink', 'paper', 2000)]['metrics']['AtoB/psnr']['mean'] == 13.0


def test_table_orders_looks_puts_paper_first_and_adds_the_input():
  rows = looks_table.read_rows(
    [
      _line('shapes', 'improved', 15.0),
      _line('shapes', 'paper', 14.0),
      _line('colour', 'paper', 14.0),
    ]
  )
  table = looks_table.markdown(rows).splitlines()
  body = [line.split(' | ')[:2] for line in table[2:]]
  assert body == [
    ['| colour', '`paper`'],
    ['| colour', '*input unchanged*'],
    ['| shapes', '`paper`'],
    ['| shapes', '`improved`'],
    ['| shapes', '*input unchanged*'],
  ]
  assert '| 14.00 ± 0.10 | 0.350 ± 0.010 | 13.00 ± 0.10 |' in table[2]
  assert '| 11.00 | 0.500 | 11.00 | 0.500 | – | – |' in table[3]


def test_shortfalls_name_each_worse_direction_metric_and_missing_look():
  rows = looks_table.read_rows(
    [
      _line('colour', 'paper', 14.0),
      _line('colour', 'improved', 16.0),
      _line('texture', 'paper', 14.0),
      _line('texture', 'improved', 13.0, cb=2.0),
      _line('shapes', 'paper', 14.0),
    ]
  )
  short = looks_table.shortfalls(rows, 'improved')
  assert short[0].startswith("shapes: no rows of both 'paper' and 'improved'")
  assert len(short) == 1 + 6  # texture: PSNR, SSIM and checkerboard, both ways.
  assert all(s.startswith('texture') for s in short[1:])
  assert (
    looks_table.shortfalls(
      looks_table.read_rows([_line('ink', 'paper', 1.0), _line('ink', 'x', 2.0)]), 'x'
    )
    == []
  )


def test_a_missing_results_file_is_one_usage_line(tmp_path):
  with pytest.raises(looks_table.app.UsageError, match='No results file'):
    looks_table.read_files([str(tmp_path / 'none.jsonl')])


def _run(look, row, seed, psnr, *, direction=None, layout='v3'):
  metrics = {}
  for d in (direction,) if direction else ('AtoB', 'BtoA'):
    metrics.update({f'{d}/psnr': psnr, f'{d}/ssim': psnr / 40, f'{d}/checkerboard': 1.0})
  return json.dumps(
    {
      'kind': 'run',
      'dataset': f'folder:/data/photo_looks_{layout}_72px/{look}',
      'row': row,
      'seed': seed,
      'split': 'val',
      'steps': 2000,
      'metrics': metrics,
    }
  )


def test_validation_rows_average_the_seeds_merge_directions_and_check_alike():
  lines = [
    _run('ink', 'ema', 0, 30.0, layout='v2'),  # An older split: dropped.
    _run('ink', 'paper', 0, 10.0),
    _run('ink', 'paper', 1, 12.0),
    _run('ink', 'paper', 1, 14.0),  # The same seed again: the later line wins.
    _run('ink', 'cut', 0, 13.0, direction='AtoB'),
    _run('ink', 'cut', 0, 9.0, direction='BtoA'),
    _line('ink', 'paper', 40.0),  # A test row: not validation.
  ]
  rows = looks_table.read_val_rows(lines)
  assert ('ink', 'ema', 2000) not in rows
  paper = rows[('ink', 'paper', 2000)]
  assert paper['seeds'] == [0, 1]
  assert paper['metrics']['AtoB/psnr'] == {'mean': 12.0, 'spread': 2.0}
  cut = rows[('ink', 'cut', 2000)]['metrics']
  assert (cut['AtoB/psnr']['mean'], cut['BtoA/psnr']['mean']) == (13.0, 9.0)
  short = looks_table.shortfalls(rows, 'cut')
  assert [s.split(':')[0] for s in short] == ['ink B→A psnr', 'ink B→A ssim']
  only_0 = looks_table.read_val_rows(lines, seeds=[0])
  assert only_0[('ink', 'paper', 2000)]['metrics']['AtoB/psnr']['mean'] == 10.0
  assert '| ink | `cut` | 2000 | 1 |' in looks_table.markdown(rows)


def test_ranking_puts_the_texture_margin_first_then_fewest_shortfalls_then_psnr():
  rows = looks_table.read_rows(
    [
      _line('texture', 'paper', 12.0),
      _line('shapes', 'paper', 15.0),
      # Above the paper everywhere but by less than the texture margin.
      _line('texture', 'close', 12.5),
      _line('shapes', 'close', 15.5),
      # The margin on texture, below the paper on shapes (PSNR, SSIM both ways).
      _line('texture', 'wide', 20.0),
      _line('shapes', 'wide', 14.0),
      # The margin and above everywhere, lower mean PSNR than wide.
      _line('texture', 'best', 14.4),
      _line('shapes', 'best', 15.2),
      # The margin, never run on shapes: all six of its places count, not one.
      _line('texture', 'texture_only', 20.0),
    ]
  )
  assert [r[:3] for r in looks_table.ranking(rows)] == [
    ('best', True, 0),
    ('wide', True, 4),
    ('texture_only', True, 6),
    ('close', False, 0),
  ]
  assert looks_table.clears_margin(rows, 'best') and not looks_table.clears_margin(
    rows, 'close'
  )


def test_command_keeps_only_the_looks_asked_for(tmp_path):
  results = tmp_path / 'study.jsonl'
  results.write_text(
    '\n'.join(
      [
        _run('ink', 'paper', 0, 10.0),
        _run('ink', 'x', 0, 12.0),
        _run('tone', 'x', 0, 9.0),
      ]
    )
  )
  command = [
    sys.executable,
    '-m',
    'cyclegan_jax.studies.looks_table',
    f'--results={results}',
    '--split=val',
    '--looks=ink',
    '--rank',
  ]
  out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
  assert '| ink | `x` |' in out and '| tone |' not in out
  assert '| 1 | `x` | no | 0 | 12.00 |' in out


def test_matrix_has_a_column_per_look_input_and_paper_first_and_few_seeds_marked():
  rows = looks_table.read_val_rows(
    [
      _run('ink', 'paper', 0, 10.0),
      _run('ink', 'paper', 1, 12.0),
      _run('ink', 'paper', 2, 14.0),
      _run('ink', 'cut', 0, 13.0),
      _run('tone', 'paper', 0, 9.0),
      _run('tone', 'x', 0, 8.0),
    ]
  )
  table = looks_table.matrix(rows, 'psnr', ['cut']).splitlines()
  assert table[0] == '| PSNR A→B / B→A | tone | ink |'
  assert table[2].startswith('| *input unchanged* | ')
  assert table[3] == '| `paper` | 9.00 / 9.00 (1 seed) | 12.00±2.00 / 12.00±2.00 |'
  assert table[4] == '| `cut` | – | 13.00 / 13.00 (1 seed) |'
  assert len(table) == 5  # `x` was not asked for.
  every = looks_table.matrix(rows, 'ssim')
  assert '| `x` | 0.200 / 0.200 (1 seed) | – |' in every
