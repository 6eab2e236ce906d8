"""Tests of paired data (dataset_mode='aligned'): pairs stay pairs through every step.

Every folder pair has B = 255 - A, pixel for pixel, so a row whose B is not 255 - its A
was cropped or flipped apart from its partner, or paired with another image.
"""

import itertools
import logging
import os

import numpy as np
from PIL import Image
import pytest

from configs import default
from cyclegan_jax.cli import config_checks
from cyclegan_jax.data import channels
from cyclegan_jax.data import input_pipeline as ip
from cyclegan_jax.data import paired
from cyclegan_jax.data import synthetic

SIDE = 36  # Each half is load_size square: no resize, so crops and flips are exact.


def _config(**overrides):
  config = default.get_config()
  config.unlock()
  config.update(
    dict(
      dataset='synthetic:shapes',
      dataset_mode='aligned',
      load_size=SIDE,
      crop_size=32,
      batch_size=4,
      shuffle_buffer_size=1000,
    )
  )
  config.update(overrides)
  return config


@pytest.fixture(autouse=True)
def _fresh_caches():
  ip._validated.cache_clear()
  paired._LOGGED.clear()
  yield


def _take(ds, n):
  return list(itertools.islice(ds.as_numpy_iterator(), n))


def _u8(x):
  return np.round((np.asarray(x) + 1.0) * 127.5).astype(np.int32)


def _assert_pairs(a, b):
  """Float [..., H, W, 3] sides in [-1, 1] with B = 255 - A exactly."""
  np.testing.assert_array_equal(_u8(b), 255 - _u8(a))


def _rgb(h, w, seed):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def _write_side_by_side(root, split, n, *, width=SIDE, seed=0):
  for i in range(n):
    a = _rgb(SIDE, width, seed + i)
    _save(f'{root}/{split}/p{i}.png', np.concatenate([a, 255 - a], axis=1))


def _write_two_folders(root, phase, n, *, seed=0):
  for i in range(n):
    a = _rgb(SIDE, SIDE, seed + i)
    _save(f'{root}/{phase}A/p{i}.png', a)
    _save(f'{root}/{phase}B/p{i}.png', 255 - a)


def _write_bad(directory):
  bad = {'empty.png': b'', 'text.jpg': b'not an image\n'}
  for name, data in bad.items():
    with open(os.path.join(directory, name), 'wb') as f:
      f.write(data)
  return [os.path.join(directory, name) for name in bad]


# --- training: pairs through crop and flip ------------------------------------------


@pytest.mark.parametrize('layout', ['side_by_side', 'two_folders'])
def test_train_rows_are_true_pairs(tmp_path, layout):
  if layout == 'side_by_side':
    _write_side_by_side(tmp_path, 'train', 6)
  else:
    _write_two_folders(tmp_path, 'train', 6)
  ds, info = ip.create_train_dataset(_config(dataset=f'folder:{tmp_path}'))
  assert info == ip.DatasetInfo(num_a=6, num_b=6, epoch_length=6, has_ground_truth=False)
  batches = _take(ds, 6)
  for batch in batches:
    assert set(batch) == {'A', 'B'}
    for x in batch.values():
      assert x.shape == (4, 32, 32, 3) and x.dtype == np.float32
      assert -1.0 <= x.min() and x.max() <= 1.0
    _assert_pairs(batch['A'], batch['B'])
  rows = {row.tobytes() for b in batches for row in b['A']}
  assert len(rows) > 6  # Several crops / flips of each of the 6 pairs.


def test_train_stream_is_a_function_of_the_seed(tmp_path):
  _write_side_by_side(tmp_path, 'train', 5)
  first, again, other = (
    _take(ip.create_train_dataset(_config(dataset=f'folder:{tmp_path}', seed=s))[0], 3)
    for s in (1, 1, 2)
  )
  for x, y in zip(first, again):
    np.testing.assert_array_equal(x['A'], y['A'])
  assert any(not np.array_equal(x['A'], y['A']) for x, y in zip(first, other))


def test_resize_modes_keep_pairs_within_rounding(tmp_path):
  _write_side_by_side(tmp_path, 'train', 3, width=50)  # Halves of 36×50: resized.
  for mode in ('resize_and_crop', 'scale_width_and_crop'):
    config = _config(dataset=f'folder:{tmp_path}', preprocess=mode, load_size=40)
    for batch in _take(ip.create_train_dataset(config)[0], 2):
      # The resize is linear: B = 255 - A up to the rounding of each side.
      assert np.abs(_u8(batch['B']) - (255 - _u8(batch['A']))).max() <= 1


def test_odd_width_uses_half_columns_and_names_the_file(tmp_path, caplog):
  _write_side_by_side(tmp_path, 'train', 2)
  a = _rgb(SIDE, SIDE, 9)
  extra = np.full((SIDE, 1, 3), 7, np.uint8)  # The odd last column: dropped.
  _save(f'{tmp_path}/train/odd.png', np.concatenate([a, 255 - a, extra], axis=1))
  with caplog.at_level(logging.WARNING):
    ds, info = ip.create_train_dataset(
      _config(dataset=f'folder:{tmp_path}', batch_size=3)
    )
    batches = _take(ds, 4)
  assert info.epoch_length == 3
  assert 'odd width' in caplog.text and 'odd.png' in caplog.text
  assert caplog.text.count('odd.png') == 1
  for batch in batches:
    _assert_pairs(batch['A'], batch['B'])


def test_synthetic_pairs_are_the_same_scene_in_both_domains():
  config = _config(
    load_size=32, crop_size=32
  )  # No crop: rows are whole images (flipped).
  table_a, table_b = synthetic.load_pairs('shapes', 'train', 32)
  table_a = np.concatenate([table_a, table_a[:, :, ::-1]])  # Unflipped, then flipped.
  table_b = np.concatenate([table_b, table_b[:, :, ::-1]])
  flat_a = table_a.reshape(len(table_a), -1).astype(np.int32)
  for batch in _take(ip.create_train_dataset(config)[0], 3):
    for a, b in zip(_u8(batch['A']), _u8(batch['B'])):
      (rows,) = np.nonzero((flat_a == a.reshape(-1)).all(axis=1))
      assert len(rows) >= 1
      np.testing.assert_array_equal(b, table_b[rows[0]])


def test_gray2color_pairs_keep_their_channels():
  config = _config(dataset='synthetic:gray2color')
  config.model.input_nc = 1
  batch = _take(ip.create_train_dataset(config)[0], 1)[0]
  assert batch['A'].shape == (4, 32, 32, 1) and batch['B'].shape == (4, 32, 32, 3)
  # A is the luma of B: true for the very same crop and flip only.
  b8 = _u8(batch['B']).astype(np.uint8)
  np.testing.assert_array_equal(_u8(batch['A']), channels.luma8(b8))


def test_synthetic_pairs_are_deterministic_per_split():
  a1, b1 = synthetic.load_pairs('colors', 'test', 24)
  synthetic.load_pairs.cache_clear()
  a2, b2 = synthetic.load_pairs('colors', 'test', 24)
  np.testing.assert_array_equal(a1, a2)
  np.testing.assert_array_equal(b1, b2)
  train_a, _ = synthetic.load_pairs('colors', 'train', 24)
  assert len(train_a) == synthetic.NUM_TRAIN and len(a1) == synthetic.NUM_TEST
  assert not np.array_equal(train_a[: len(a1)], a1)
  # The test pairs are the unaligned test split with its ground truth.
  images, gt = synthetic.load_split('colors', 'testA', 24)
  np.testing.assert_array_equal(a1, images)
  np.testing.assert_array_equal(b1, gt)
  names = synthetic.pair_names('colors', 'test')
  assert names[7] == 'colors_test_0007' and len(names) == synthetic.NUM_TEST


# --- evaluation and sample grids ----------------------------------------------------


@pytest.mark.parametrize('layout', ['side_by_side', 'two_folders'])
def test_eval_elements_are_pairs_in_one_order(tmp_path, layout):
  if layout == 'side_by_side':
    _write_side_by_side(tmp_path, 'test', 3)
  else:
    _write_two_folders(tmp_path, 'test', 3)
  config = _config(dataset=f'folder:{tmp_path}')
  views = {d: _take(ip.create_eval_dataset(config, d), 10) for d in 'AB'}
  assert len(views['A']) == len(views['B']) == 3
  for ex_a, ex_b in zip(views['A'], views['B']):
    assert ex_a['name'][0] == ex_b['name'][0]
    assert ex_a['image'].shape == ex_a['gt'].shape == (1, SIDE, SIDE, 3)  # Full size.
    _assert_pairs(ex_a['image'], ex_a['gt'])
    np.testing.assert_array_equal(ex_a['image'], ex_b['gt'])
    np.testing.assert_array_equal(ex_a['gt'], ex_b['image'])
  assert [ex['name'][0] for ex in views['A']] == [b'p0', b'p1', b'p2']
  grid_a, grid_b = (ip.sample_images(config, d, 2) for d in 'AB')
  assert grid_a.shape == grid_b.shape == (2, 32, 32, 3)
  _assert_pairs(grid_a, grid_b)


def test_test_split_falls_back_to_val(tmp_path, caplog):
  _write_side_by_side(tmp_path, 'train', 2)
  _write_side_by_side(tmp_path, 'val', 2, seed=50)
  config = _config(dataset=f'folder:{tmp_path}')
  with caplog.at_level(logging.INFO, logger='absl'):
    assert ip.dataset_info(config).has_ground_truth
    assert len(_take(ip.create_eval_dataset(config, 'A'), 5)) == 2
  assert os.path.join(str(tmp_path), 'val') in caplog.text
  _write_side_by_side(tmp_path, 'test', 3, seed=80)
  assert len(_take(ip.create_eval_dataset(config, 'A'), 5)) == 3  # test/ first.


def test_synthetic_eval_pairs():
  config = _config()
  ex_a, ex_b = (_take(ip.create_eval_dataset(config, d, max_images=2), 2) for d in 'AB')
  images, gt = synthetic.load_pairs('shapes', 'test', SIDE)
  for i in range(2):
    assert ex_a[i]['name'][0] == ex_b[i]['name'][0] == f'shapes_test_{i:04d}'.encode()
    np.testing.assert_array_equal(_u8(ex_a[i]['image'][0]), images[i])
    np.testing.assert_array_equal(_u8(ex_a[i]['gt'][0]), gt[i])
    np.testing.assert_array_equal(ex_a[i]['image'], ex_b[i]['gt'])


# --- bad data -------------------------------------------------------------------------


def test_unreadable_files_are_named_and_skipped(tmp_path, caplog):
  _write_side_by_side(tmp_path, 'train', 3)
  bad = _write_bad(tmp_path / 'train')
  _write_two_folders(tmp_path / 'two', 'train', 4)
  broken = tmp_path / 'two' / 'trainB' / 'p3.png'  # Its partner is readable.
  broken.write_bytes(b'not an image')
  bad.append(broken)
  with caplog.at_level(logging.WARNING):
    for root in (tmp_path, tmp_path / 'two'):
      ds, info = ip.create_train_dataset(_config(dataset=f'folder:{root}', batch_size=2))
      assert info.epoch_length == 3
      for batch in _take(ds, 3):
        _assert_pairs(batch['A'], batch['B'])
  for path in bad:
    assert str(path) in caplog.text


def test_files_without_a_partner_are_named_and_skipped(tmp_path, caplog):
  _write_two_folders(tmp_path, 'train', 3)
  for i in range(7):
    _save(f'{tmp_path}/trainA/lonely{i}.png', _rgb(8, 8, i))
  _save(f'{tmp_path}/trainB/single.png', _rgb(8, 8, 0))
  with caplog.at_level(logging.WARNING):
    ds, info = ip.create_train_dataset(
      _config(dataset=f'folder:{tmp_path}', batch_size=3)
    )
    batch = _take(ds, 1)[0]
  assert info.epoch_length == 3
  _assert_pairs(batch['A'], batch['B'])
  assert 'Skipping 7 of 10 file(s)' in caplog.text
  assert 'lonely0.png' in caplog.text and 'and 2 more' in caplog.text
  assert 'single.png' in caplog.text


def test_b_of_another_size_follows_its_a_and_ambiguous_names_are_skipped(
  tmp_path, caplog
):
  _write_two_folders(tmp_path, 'train', 2)
  _write_two_folders(tmp_path, 'test', 2)
  _save(f'{tmp_path}/trainB/p1.png', _rgb(2 * SIDE, 3 * SIDE, 5))
  _save(f'{tmp_path}/testB/p1.png', _rgb(2 * SIDE, 3 * SIDE, 5))
  _save(f'{tmp_path}/trainA/p1.jpg', _rgb(SIDE, SIDE, 5))  # p1.png or p1.jpg?
  config = _config(dataset=f'folder:{tmp_path}', batch_size=2)
  with caplog.at_level(logging.WARNING):
    batch = _take(ip.create_train_dataset(config)[0], 1)[0]
  assert 'p1.jpg' in caplog.text and 'share a name' in caplog.text
  assert batch['A'].shape == batch['B'].shape == (2, 32, 32, 3)
  _assert_pairs(batch['A'], batch['B'])  # Only p0 is left.
  (ex,) = [e for e in _take(ip.create_eval_dataset(config, 'B'), 2) if e['name'] == b'p1']
  assert ex['image'].shape == ex['gt'].shape == (1, SIDE, SIDE, 3)


def _one_line_error(error_type, fn):
  with pytest.raises(error_type) as info:
    fn()
  assert '\n' not in str(info.value)
  return str(info.value)


def test_empty_splits_and_missing_layouts_are_one_line_errors(tmp_path):
  os.makedirs(tmp_path / 'train')
  config = _config(dataset=f'folder:{tmp_path}')
  assert 'No images in' in _one_line_error(ValueError, lambda: ip.dataset_info(config))
  _write_bad(tmp_path / 'train')
  assert 'readable' in _one_line_error(ValueError, lambda: ip.dataset_info(config))
  two = tmp_path / 'two'
  _save(f'{two}/trainA/x.png', _rgb(8, 8, 0))
  _save(f'{two}/trainB/y.png', _rgb(8, 8, 0))
  config = _config(dataset=f'folder:{two}')
  assert 'No pairs in' in _one_line_error(ValueError, lambda: ip.dataset_info(config))
  config = _config(dataset=f'folder:{tmp_path}/nowhere')
  assert 'does not exist' in _one_line_error(
    FileNotFoundError, lambda: ip.dataset_info(config)
  )
  os.makedirs(tmp_path / 'other' / 'trainA')
  config = _config(dataset=f'folder:{tmp_path}/other')
  message = _one_line_error(FileNotFoundError, lambda: ip.dataset_info(config))
  assert 'no train/ and no trainA/ with trainB/' in message


def test_tfds_with_aligned_is_refused_in_one_line():
  config = _config(dataset='cycle_gan/facades')
  message = _one_line_error(ValueError, lambda: config_checks.validate(config))
  assert message.startswith("config.dataset_mode='aligned'") and 'unpaired' in message
  assert 'unpaired' in _one_line_error(ValueError, lambda: ip.dataset_info(config))
  config_checks.validate(_config(dataset='cycle_gan/facades', dataset_mode='unaligned'))


# --- processes --------------------------------------------------------------------------


def test_two_processes_get_disjoint_pairs_covering_the_set(tmp_path):
  _write_side_by_side(tmp_path, 'train', 5)
  _write_side_by_side(tmp_path, 'test', 5, seed=40)
  config = _config(
    dataset=f'folder:{tmp_path}', batch_size=2, load_size=SIDE, crop_size=SIDE
  )
  config.no_flip = True  # Whole, unflipped images: each row names its pair.
  whole = {
    (255 - _rgb(SIDE, SIDE, i)).tobytes(): i for i in range(5)
  }  # B side of each pair.
  seen = []
  for p in (0, 1):
    ds, _ = ip.create_train_dataset(config, process_index=p, process_count=2)
    rows = set()
    for batch in _take(ds, 6):
      assert batch['A'].shape[0] == 1
      _assert_pairs(batch['A'], batch['B'])
      rows |= {whole[_u8(b).astype(np.uint8).tobytes()] for b in batch['B']}
    seen.append(rows)
  assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(5))
  names = [
    {
      ex['name'][0]
      for ex in _take(
        ip.create_eval_dataset(config, 'B', process_index=p, process_count=2), 10
      )
    }
    for p in (0, 1)
  ]
  assert len(names[0]) == 3 and len(names[1]) == 2 and not names[0] & names[1]
