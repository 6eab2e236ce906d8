"""benchmarks/per_image_gap.py: the per-image PSNR gap of two rows, and the light."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
from PIL import Image
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SPEC = importlib.util.spec_from_file_location(
  'per_image_gap', os.path.join(ROOT, 'benchmarks', 'per_image_gap.py')
)
gap = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(gap)

LEVELS = (0.1, 0.2, 0.7, 0.8)  # Two dark inputs, two bright ones.


def _save(path, value: int, size: int = 8) -> None:
  Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def _row(tmp_path, name: str, errors: dict[float, int], seeds=(0, 1)) -> str:
  """A row's scored runs: input k has light LEVELS[k]; its fake is off the truth (128)
  by errors[level] 8-bit steps."""
  for seed in seeds:
    for prefix in ('step_', 'val_step_'):
      for direction in gap.DIRECTIONS:
        folder = (
          tmp_path / name / f'seed_{seed}' / 'eval' / f'{prefix}9' / 'images' / direction
        )
        folder.mkdir(parents=True)
        for k, level in enumerate(LEVELS):
          _save(folder / f'{k:04d}_real.png', round(level * 255))
          _save(folder / f'{k:04d}_gt.png', 128)
          _save(folder / f'{k:04d}_fake.png', 128 + errors[level])
  return str(tmp_path / name)


def test_a_row_better_on_bright_inputs_only_shows_it(tmp_path):
  a = _row(tmp_path, 'a', {level: 20 for level in LEVELS})
  # b: 10× smaller error on the bright inputs (+20 dB), 2× larger on the dark (−6 dB).
  b = _row(tmp_path, 'b', {0.1: 40, 0.2: 40, 0.7: 2, 0.8: 2})
  lines = gap.lines(a, b, [0, 1], 'test')
  assert [x['direction'] for x in lines] == ['AtoB', 'BtoA']
  line = lines[0]
  assert line['images'] == 4 and line['b_worse_share'] == 0.5
  assert line['gap_darker_half_db'] == pytest.approx(-6.02, abs=0.01)
  assert line['gap_brighter_half_db'] == pytest.approx(20.0, abs=0.01)
  assert line['gap_db'] == pytest.approx(6.99, abs=0.01)
  assert line['corr_luma'] > 0.8 and line['input_luma'] == pytest.approx(0.45, abs=0.01)


def test_equal_rows_have_no_gap_and_no_correlation(tmp_path):
  a = _row(tmp_path, 'a', {level: 20 for level in LEVELS})
  b = _row(tmp_path, 'b', {level: 20 for level in LEVELS})
  line = gap.lines(a, b, [0], 'val')[1]
  assert line['gap_db'] == 0.0 and line['b_worse_share'] == 0.0
  assert line['corr_luma'] is None


def test_an_unscored_run_is_named(tmp_path):
  a = _row(tmp_path, 'a', {level: 20 for level in LEVELS}, seeds=(0,))
  with pytest.raises(gap.app.UsageError, match='seed_1'):
    gap.lines(a, a, [0, 1], 'test')
