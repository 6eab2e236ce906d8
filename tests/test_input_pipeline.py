"""Tests of the tf.data input pipeline: every source, preprocessing, sharding, bad data."""

import io
import itertools
import logging
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from configs import default
from cyclegan_jax.data import image_files
from cyclegan_jax.data import input_pipeline as ip
from cyclegan_jax.data import synthetic


def _config(**overrides):
  config = default.get_config()
  config.unlock()
  config.update(
    dict(
      dataset='synthetic:shapes',
      load_size=36,
      crop_size=32,
      batch_size=4,
      shuffle_buffer_size=1000,
    )
  )
  config.update(overrides)
  return config


def _take(ds, n):
  return list(itertools.islice(ds.as_numpy_iterator(), n))


def _index_of(images, table):
  """Row of `table` (uint8 [N, H, W, 3]) equal to each float image in [-1, 1]."""
  flat = table.reshape(len(table), -1).astype(np.int32)
  out = []
  for image in images:
    key = np.round((image + 1.0) * 127.5).astype(np.int32).reshape(-1)
    (rows,) = np.nonzero((flat == key).all(axis=1))
    assert len(rows) >= 1, 'streamed image is not in the split'
    out.append(int(rows[0]))
  return out


@pytest.fixture(autouse=True)
def _fresh_caches():
  ip._tfds_builder.cache_clear()  # Builders made under one TFDS mock must not leak.
  ip._validated.cache_clear()
  yield


# --- preprocessing -----------------------------------------------------------------


def _image(h, w):
  return tf.constant(np.random.default_rng(0).integers(0, 256, (h, w, 3)), tf.uint8)


@pytest.mark.parametrize(
  'mode, in_shape, out_shape',
  [
    ('resize_and_crop', (100, 60), (36, 36)),
    ('scale_width_and_crop', (100, 50), (72, 36)),  # Width to load_size, aspect kept.
    ('scale_width_and_crop', (40, 200), (32, 36)),  # Height floored at crop_size.
    ('crop', (50, 70), (50, 70)),
    ('crop', (20, 10), (64, 32)),  # Smaller than the crop: resized up, aspect kept.
    ('none', (30, 45), (32, 44)),  # Rounded to multiples of 4 (round half to even).
    ('none', (34, 38), (32, 40)),
  ],
)
def test_deterministic_preprocess_sizes(mode, in_shape, out_shape):
  out = ip.deterministic_preprocess(_image(*in_shape), _config(preprocess=mode))
  assert out.dtype == tf.uint8
  assert tuple(out.shape[:2]) == out_shape


def test_random_augment_crops_flips_and_scales():
  config = _config()
  image = ip.deterministic_preprocess(_image(50, 50), config)
  outs = [
    ip.random_augment(image, tf.constant([1, i], tf.int64), config).numpy()
    for i in range(16)
  ]
  assert all(o.shape == (32, 32, 3) and o.dtype == np.float32 for o in outs)
  assert min(o.min() for o in outs) >= -1.0 and max(o.max() for o in outs) <= 1.0
  assert len({o.tobytes() for o in outs}) > 4  # Different crops / flips per seed.
  again = ip.random_augment(image, tf.constant([1, 3], tf.int64), config).numpy()
  np.testing.assert_array_equal(again, outs[3])


@pytest.mark.parametrize('no_flip', [False, True])
def test_flip_follows_no_flip(no_flip):
  config = _config(preprocess='none', no_flip=no_flip)
  image = _image(8, 8)
  expected = ip.to_float(image).numpy()
  flipped = [
    not np.array_equal(
      ip.random_augment(image, tf.constant([0, i], tf.int64), config).numpy(), expected
    )
    for i in range(20)
  ]
  assert any(flipped) != no_flip
  if not no_flip:
    assert not all(flipped)


# --- synthetic source: shapes, range, determinism, independence, processes ----------


def test_synthetic_train_batches():
  ds, info = ip.create_train_dataset(_config())
  assert info == ip.DatasetInfo(
    num_a=synthetic.NUM_TRAIN,
    num_b=synthetic.NUM_TRAIN,
    epoch_length=synthetic.NUM_TRAIN,
    has_ground_truth=True,
  )
  assert info == ip.dataset_info(_config())
  batch = _take(ds, 1)[0]
  assert set(batch) == {'A', 'B'}
  for x in batch.values():
    assert x.shape == (4, 32, 32, 3) and x.dtype == np.float32
    assert -1.0 <= x.min() < -0.5 and 0.5 < x.max() <= 1.0


def test_same_seed_same_stream_other_seed_other_stream():
  first = _take(ip.create_train_dataset(_config(seed=3))[0], 3)
  again = _take(ip.create_train_dataset(_config(seed=3))[0], 3)
  other = _take(ip.create_train_dataset(_config(seed=4))[0], 3)
  for x, y in zip(first, again):
    np.testing.assert_array_equal(x['A'], y['A'])
    np.testing.assert_array_equal(x['B'], y['B'])
  assert not np.array_equal(first[0]['A'], other[0]['A'])


def _epoch_indices(config, process_index=0, process_count=1, epochs=1):
  """Indices into trainA / trainB of the images streamed in the first epochs."""
  ds, _ = ip.create_train_dataset(
    config, process_index=process_index, process_count=process_count
  )
  per_process = synthetic.NUM_TRAIN // process_count
  batch = config.batch_size // process_count
  batches = _take(ds, epochs * per_process // batch)
  size = config.load_size
  out = {}
  for d in 'AB':
    table, _ = synthetic.load_split('shapes', f'train{d}', size)
    out[d] = _index_of(np.concatenate([b[d] for b in batches]), table)
  return out


def test_a_and_b_are_shuffled_independently_epoch_by_epoch():
  # preprocess 'none' at 32 px, no flip: the streamed images are the split's images.
  config = _config(load_size=32, preprocess='none', no_flip=True, batch_size=8)
  idx = _epoch_indices(config, epochs=2)
  n = synthetic.NUM_TRAIN
  for d in 'AB':
    assert sorted(idx[d][:n]) == list(range(n))  # Each epoch is a permutation.
    assert sorted(idx[d][n:]) == list(range(n))
    assert idx[d][:n] != list(range(n))  # Shuffled,
    assert idx[d][:n] != idx[d][n:]  # and differently on each epoch.
  assert idx['A'][:n] != idx['B'][:n]  # Unaligned: A's order is not B's.


def test_two_processes_read_disjoint_halves():
  config = _config(load_size=32, preprocess='none', no_flip=True, batch_size=8)
  parts = [_epoch_indices(config, process_index=p, process_count=2) for p in (0, 1)]
  for d in 'AB':
    first, second = set(parts[0][d]), set(parts[1][d])
    assert len(first) == len(second) == synthetic.NUM_TRAIN // 2
    assert not first & second
    assert first | second == set(range(synthetic.NUM_TRAIN))
  # Same config, different processes: different augmentation and order streams too.
  assert parts[0]['A'] != parts[1]['A']


def test_batch_size_must_divide_by_process_count():
  with pytest.raises(ValueError, match='divisible by the number of processes'):
    ip.create_train_dataset(_config(batch_size=3), process_index=0, process_count=2)


def test_bad_preprocess_and_load_size_are_errors():
  with pytest.raises(ValueError, match='preprocess must be one of'):
    ip.create_train_dataset(_config(preprocess='resize'))
  with pytest.raises(ValueError, match='load_size'):
    ip.create_train_dataset(_config(load_size=16))


def test_unknown_synthetic_task():
  with pytest.raises(ValueError, match='synthetic:shapes'):
    ip.dataset_info(_config(dataset='synthetic:nope'))


@pytest.mark.parametrize('domain, other', [('A', 'B'), ('B', 'A')])
def test_synthetic_eval_carries_aligned_ground_truth(domain, other):
  config = _config()
  examples = _take(ip.create_eval_dataset(config, domain), 100)
  assert len(examples) == synthetic.NUM_TEST
  scenes = synthetic.scenes('shapes', f'test{domain}')
  for i in (0, 5, synthetic.NUM_TEST - 1):
    ex = examples[i]
    assert ex['image'].shape == ex['gt'].shape == (1, 36, 36, 3)  # Full size: load_size.
    assert ex['name'][0].decode() == f'shapes_test{domain}_{i:04d}'
    want_image = synthetic.render('shapes', scenes[i], domain, 36)[0]
    want_gt = synthetic.render('shapes', scenes[i], other, 36)[0]
    np.testing.assert_allclose(ex['image'][0], want_image / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_allclose(ex['gt'][0], want_gt / 127.5 - 1.0, atol=1e-6)


def test_eval_processes_and_max_images():
  config = _config()
  names = [
    [
      ex['name'][0]
      for ex in _take(
        ip.create_eval_dataset(
          config, 'A', process_index=p, process_count=2, max_images=9
        ),
        100,
      )
    ]
    for p in (0, 1)
  ]
  assert len(names[0]) == 5 and len(names[1]) == 4
  assert sorted(names[0] + names[1]) == [
    f'shapes_testA_{i:04d}'.encode() for i in range(9)
  ]


def test_fixed_test_images():
  config = _config(crop_size=24)
  images = ip.fixed_test_images(config, 'A', 3)
  assert images.shape == (3, 24, 24, 3) and images.dtype == np.float32
  assert -1.0 <= images.min() and images.max() <= 1.0
  np.testing.assert_array_equal(images, ip.fixed_test_images(config, 'A', 3))
  assert not np.array_equal(images[0], images[1])


# --- folder source ------------------------------------------------------------------


def _save(path, array, **kwargs):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path, **kwargs)


def _rgb(h, w, seed):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_folder(root, *, n_a=5, n_b=4, n_test=3, gt=True):
  for i in range(n_a):
    _save(f'{root}/trainA/a{i}.jpg', _rgb(40, 48, i))
  for i in range(n_b):
    _save(f'{root}/trainB/b{i}.png', _rgb(44, 40, 100 + i))
  for d in 'AB':
    for i in range(n_test):
      _save(f'{root}/test{d}/t{i}.png', _rgb(28, 36, 200 + i))
      if gt:
        _save(f'{root}/test{d}_gt/t{i}.png', 255 - _rgb(28, 36, 200 + i))


def _write_bad_files(directory):
  """Every kind of unreadable file; returns their paths."""
  buf = io.BytesIO()
  Image.fromarray(_rgb(64, 64, 7)).save(buf, format='JPEG')
  bad = {
    'truncated.jpg': buf.getvalue()[: len(buf.getvalue()) // 2],
    'empty.jpg': b'',
    'text.jpg': b'this is not an image\n',
  }
  for name, data in bad.items():
    with open(os.path.join(directory, name), 'wb') as f:
      f.write(data)
  return [os.path.join(directory, name) for name in bad]


def test_folder_train_skips_and_names_every_bad_file(tmp_path, caplog):
  _write_folder(tmp_path)
  bad = _write_bad_files(tmp_path / 'trainA')
  config = _config(dataset=f'folder:{tmp_path}', batch_size=2)
  with caplog.at_level(logging.WARNING):
    ds, info = ip.create_train_dataset(config)
    batches = _take(ds, 12)  # Several epochs of 5 images: never reaches a bad file.
  assert info == ip.DatasetInfo(num_a=5, num_b=4, epoch_length=5, has_ground_truth=True)
  for path in bad:
    assert path in caplog.text
  assert len(batches) == 12
  for b in batches:
    assert b['A'].shape == b['B'].shape == (2, 32, 32, 3)
    assert -1.0 <= b['A'].min() and b['A'].max() <= 1.0


def test_folder_image_modes_become_rgb8(tmp_path):
  base = _rgb(20, 30, 1)
  _save(f'{tmp_path}/gray.png', base[..., 0])
  _save(f'{tmp_path}/rgba.png', np.concatenate([base, base[..., :1]], axis=-1))
  Image.fromarray(base).convert('P').save(f'{tmp_path}/palette.png')
  sixteen = np.full((20, 30), 32896, np.uint16)  # 128 * 257: mid-grey in 16 bits.
  sixteen[0, 0] = 65535
  Image.fromarray(sixteen).save(f'{tmp_path}/sixteen.png')
  _save(f'{tmp_path}/rgb.webp', base, lossless=True)
  _save(f'{tmp_path}/rgb.bmp', base)
  for name in (
    'gray.png',
    'rgba.png',
    'palette.png',
    'sixteen.png',
    'rgb.webp',
    'rgb.bmp',
  ):
    out = image_files.read_rgb(f'{tmp_path}/{name}', max_side=4096)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8, name
  np.testing.assert_array_equal(image_files.read_rgb(f'{tmp_path}/rgba.png', 4096), base)
  np.testing.assert_array_equal(image_files.read_rgb(f'{tmp_path}/rgb.webp', 4096), base)
  gray = image_files.read_rgb(f'{tmp_path}/gray.png', 4096)
  np.testing.assert_array_equal(gray, np.repeat(base[..., :1], 3, axis=-1))
  sixteen_out = image_files.read_rgb(f'{tmp_path}/sixteen.png', 4096)
  assert sixteen_out[1, 1].tolist() == [128] * 3  # Rescaled, not clipped at 255.
  assert sixteen_out[0, 0].tolist() == [255] * 3


def test_folder_large_images_are_downscaled_and_small_ones_upscaled(tmp_path):
  _write_folder(tmp_path)
  _save(f'{tmp_path}/trainB/huge.jpg', _rgb(300, 2000, 3))
  _save(f'{tmp_path}/trainB/tiny.png', _rgb(6, 9, 4))
  huge = image_files.read_rgb(f'{tmp_path}/trainB/huge.jpg', max_side=500)
  assert huge.shape == (75, 500, 3)
  config = _config(
    dataset=f'folder:{tmp_path}', preprocess='crop', max_image_side=500, batch_size=6
  )
  ds, info = ip.create_train_dataset(config)
  assert info.num_b == 6
  for b in _take(ds, 3):
    assert b['B'].shape == (6, 32, 32, 3)


def test_folder_eval_names_and_ground_truth(tmp_path):
  _write_folder(tmp_path)
  config = _config(dataset=f'folder:{tmp_path}')
  examples = _take(ip.create_eval_dataset(config, 'B'), 10)
  assert [ex['name'][0] for ex in examples] == [b't0', b't1', b't2']
  for i, ex in enumerate(examples):
    assert ex['image'].shape == ex['gt'].shape == (1, 28, 36, 3)  # Full size.
    image = _rgb(28, 36, 200 + i)
    np.testing.assert_allclose(ex['image'][0], image / 127.5 - 1.0, atol=1e-6)
    np.testing.assert_allclose(ex['gt'][0], (255 - image) / 127.5 - 1.0, atol=1e-6)


def test_folder_without_ground_truth(tmp_path):
  _write_folder(tmp_path, gt=False)
  config = _config(dataset=f'folder:{tmp_path}')
  assert not ip.dataset_info(config).has_ground_truth
  ex = _take(ip.create_eval_dataset(config, 'A'), 1)[0]
  assert set(ex) == {'image', 'name'}


def test_folder_file_gone_after_validation_is_skipped(tmp_path):
  _write_folder(tmp_path)
  config = _config(dataset=f'folder:{tmp_path}')
  ds = ip.create_eval_dataset(config, 'A')
  os.remove(tmp_path / 'testA' / 't1.png')
  assert [ex['name'][0] for ex in _take(ds, 10)] == [b't0', b't2']


def test_folder_two_processes_are_disjoint(tmp_path):
  _write_folder(tmp_path, n_test=5)
  config = _config(dataset=f'folder:{tmp_path}')
  parts = [
    {
      ex['name'][0]
      for ex in _take(
        ip.create_eval_dataset(config, 'A', process_index=p, process_count=2), 10
      )
    }
    for p in (0, 1)
  ]
  assert len(parts[0]) == 3 and len(parts[1]) == 2 and not parts[0] & parts[1]


def test_folder_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    ip.dataset_info(_config(dataset=f'folder:{tmp_path}/nowhere'))
  _write_folder(tmp_path)
  config = _config(dataset=f'folder:{tmp_path}')
  for f in os.listdir(tmp_path / 'trainB'):
    os.remove(tmp_path / 'trainB' / f)
  with pytest.raises(ValueError, match='No images in .*trainB'):
    ip.dataset_info(config)
  _write_bad_files(tmp_path / 'trainB')
  with pytest.raises(ValueError, match='unreadable'):
    ip.create_train_dataset(config)
  for f in os.listdir(tmp_path / 'trainB'):
    os.remove(tmp_path / 'trainB' / f)
  os.rmdir(tmp_path / 'trainB')
  with pytest.raises(FileNotFoundError, match='no trainB/ subfolder'):
    ip.dataset_info(config)


# --- TFDS source --------------------------------------------------------------------


def test_tfds_mock_train_and_eval():
  config = _config(dataset='cycle_gan/horse2zebra', batch_size=2)
  with tfds.testing.mock_data(num_examples=6):
    ds, info = ip.create_train_dataset(config)
    batches = _take(ds, 4)  # Past one epoch of 6 images.
    examples = _take(ip.create_eval_dataset(config, 'A'), 10)
    fixed = ip.fixed_test_images(config, 'B', 2)
  assert info == ip.DatasetInfo(num_a=6, num_b=6, epoch_length=6, has_ground_truth=False)
  for b in batches:
    assert b['A'].shape == b['B'].shape == (2, 32, 32, 3)
    assert -1.0 <= b['A'].min() and b['A'].max() <= 1.0
  assert len(examples) == 6 and 'gt' not in examples[0]
  assert examples[0]['image'].dtype == np.float32 and examples[0]['image'].ndim == 4
  names = [ex['name'][0].decode() for ex in examples]
  assert len(set(names)) == 6
  assert all('.' not in n and '/' not in n for n in names)  # Usable as file stems.
  assert fixed.shape == (2, 32, 32, 3)


def _indexed_as_dataset(num_examples):
  """A mock `as_dataset` whose images hold their example index, honouring sub-splits."""
  splits = tfds.core.SplitDict(
    [
      tfds.core.SplitInfo(name=s, shard_lengths=[num_examples], num_bytes=0)
      for s in ('trainA', 'trainB', 'testA', 'testB')
    ]
  )

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del self, decoders, read_config, shuffle_files
    if isinstance(split, str):
      split = tfds.core.ReadInstruction.from_spec(split)
    index = [
      i
      for a in split.to_absolute(splits)
      for i in range(a.from_ or 0, num_examples if a.to is None else a.to)
    ]
    return tf.data.Dataset.from_tensor_slices(
      {
        'image': np.stack([np.full((40, 40, 3), i, np.uint8) for i in index]),
        'label': np.zeros(len(index), np.int64),
        'tfds_id': [f'cycle_gan-x.tfrecord__{i}' for i in index],
      }
    )

  return as_dataset


def test_tfds_two_processes_read_disjoint_parts():
  config = _config(dataset='cycle_gan/horse2zebra', batch_size=2, no_flip=True)
  seen = []
  with tfds.testing.mock_data(as_dataset_fn=_indexed_as_dataset(9)):
    for p in (0, 1):
      ds, info = ip.create_train_dataset(config, process_index=p, process_count=2)
      pixels = np.concatenate([b['A'][:, 0, 0, 0] for b in _take(ds, 10)])
      values = {int(round((v + 1) * 127.5)) for v in pixels}
      seen.append(values)
  assert info.num_a == 9
  assert seen[0] == {0, 1, 2, 3, 4} and seen[1] == {5, 6, 7, 8}


def test_tfds_unknown_name_lists_the_valid_ones():
  with pytest.raises(ValueError, match='cycle_gan/horse2zebra.*cycle_gan/facades'):
    ip.dataset_info(_config(dataset='cycle_gan/horse2tiger'))
  with pytest.raises(ValueError, match='cycle_gan/monet2photo'):
    ip.dataset_info(_config(dataset='no_such_dataset'))


def test_tfds_failed_download_says_how_to_place_the_zip(tmp_path, monkeypatch):
  def fail(self, *args, **kwargs):
    raise ConnectionError('no network')

  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', fail)
  config = _config(dataset='cycle_gan/horse2zebra', data_dir=str(tmp_path))
  with pytest.raises(RuntimeError) as e:
    ip.create_train_dataset(config)
  message = str(e.value)
  assert os.path.join(str(tmp_path), 'downloads', 'manual') in message
  assert 'horse2zebra.zip' in message and 'folder:' in message and 'no network' in message
