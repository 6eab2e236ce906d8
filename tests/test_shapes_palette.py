"""benchmarks/shapes_palette.py: which output colour each input colour of `shapes` gets."""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
from PIL import Image
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SPEC = importlib.util.spec_from_file_location(
  'shapes_palette', os.path.join(ROOT, 'benchmarks', 'shapes_palette.py')
)
palette = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(palette)


def _image(background, colour, size=16) -> np.ndarray:
  """A square of `colour` (RGB in [0, 1]) in the middle of `background`."""
  x = np.empty((size, size, 3))
  x[...] = background
  x[4:12, 4:12] = colour
  return np.round(x * 255).astype(np.uint8)


def _workdir(tmp_path, fake_index: dict[str, int]) -> str:
  """A scored run: one image per palette colour and direction; the fake paints target
  colour `fake_index[direction][k]` where the truth paints colour k."""
  folder = tmp_path / 'run' / 'eval' / 'step_7'
  for direction, (src, dst) in (('AtoB', ('A', 'B')), ('BtoA', ('B', 'A'))):
    (folder / 'images' / direction).mkdir(parents=True)
    back = {'A': palette.OTHERS['A'][0], 'B': palette.OTHERS['B'][0]}
    for k in range(3):
      stem = folder / 'images' / direction / f'x_{k}'
      pal_src, pal_dst = palette.PALETTES[src], palette.PALETTES[dst]
      Image.fromarray(_image(back[src], pal_src[k])).save(f'{stem}_real.png')
      Image.fromarray(_image(back[dst], pal_dst[k])).save(f'{stem}_gt.png')
      fake = pal_dst[fake_index[direction][k]]
      Image.fromarray(_image(back[dst], fake)).save(f'{stem}_fake.png')
  metrics = {f'{d}/{m}': 1.0 for d in ('AtoB', 'BtoA') for m in ('psnr', 'ssim')}
  (folder / 'metrics.json').write_text(json.dumps({'split': 'test', 'metrics': metrics}))
  return str(tmp_path / 'run')


def test_a_run_that_paints_the_truth_gets_every_pairing_right(tmp_path):
  lines = palette.run_lines(
    _workdir(tmp_path, {'AtoB': [0, 1, 2], 'BtoA': [0, 1, 2]}), None
  )
  assert [(x['direction'], x['step'], x['right']) for x in lines] == [
    ('AtoB', 7, 3),
    ('BtoA', 7, 3),
  ]
  assert lines[0]['pairing']['red'] == {
    'learned': 'yellow',
    'share': 1.0,
    'truth': 'yellow',
  }


def test_a_swapped_pairing_is_named_and_counted(tmp_path):
  lines = palette.run_lines(
    _workdir(tmp_path, {'AtoB': [0, 2, 1], 'BtoA': [1, 1, 2]}), None
  )
  a_to_b, b_to_a = lines
  assert a_to_b['right'] == 1 and b_to_a['right'] == 2
  assert a_to_b['pairing']['green'] == {
    'learned': 'orange',
    'share': 1.0,
    'truth': 'magenta',
  }
  assert b_to_a['pairing']['yellow']['learned'] == 'green'


def test_the_validation_split_reads_its_own_evaluation(tmp_path):
  workdir = _workdir(tmp_path, {'AtoB': [0, 1, 2], 'BtoA': [0, 1, 2]})
  with pytest.raises(palette.app.UsageError, match='No evaluation of the val split'):
    palette.run_lines(workdir, None, 'val')
  os.rename(f'{workdir}/eval/step_7', f'{workdir}/eval/val_step_7')
  assert [x['right'] for x in palette.run_lines(workdir, None, 'val')] == [3, 3]


def test_an_unscored_run_is_one_usage_line(tmp_path):
  with pytest.raises(palette.app.UsageError, match='score the run first'):
    palette.run_lines(str(tmp_path), None)
