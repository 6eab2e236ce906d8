"""Tests of `synthetic:streets` and of Cityscapes folders in the official layout."""

import os
import shutil

import numpy as np
from PIL import Image
import pytest

from configs import default
from cyclegan_jax.cli import config_checks
from cyclegan_jax.data import input_pipeline as ip
from cyclegan_jax.data import labels
from cyclegan_jax.data import pair_folders
from cyclegan_jax.data import paired
from cyclegan_jax.data import streets
from cyclegan_jax.data import synthetic

SIZE = 32


def _config(**overrides):
  config = default.get_config()
  config.unlock()
  config.update(
    dict(dataset='synthetic:streets', load_size=SIZE, crop_size=SIZE, batch_size=4)
  )
  config.update(overrides)
  return config


def _u8(x):
  return np.round((np.asarray(x) + 1.0) * 127.5).astype(np.int32)


def _take(ds, n):
  return list(ds.take(n).as_numpy_iterator())


def test_label_maps_are_exact_official_colours_of_the_benchmark_classes():
  photos, b = synthetic.load_pairs('streets', 'test', SIZE)
  _, ids = streets.render_split('testA', synthetic.NUM_TEST, SIZE)
  assert photos.shape == b.shape == (synthetic.NUM_TEST, SIZE, SIZE, 3)
  assert photos.dtype == b.dtype == np.uint8
  # B decodes to the exact train ids: truth both ways, no colour is ambiguous.
  decoded = labels.colors_to_train_ids(b)
  np.testing.assert_array_equal(decoded, streets.train_ids(ids))
  names = {lb.train_id: lb.name for lb in labels.TRAIN_LABELS}
  present = {names[i] for i in np.unique(decoded) if i != labels.IGNORE}
  assert present == set(streets.CLASSES)
  assert (decoded == labels.IGNORE).any()  # Some ego-vehicle bonnets (void).


def test_deterministic_and_unpaired():
  a1, ids1 = streets.render_scene('trainA', 3, 24)
  a2, ids2 = streets.render_scene('trainA', 3, 24)
  np.testing.assert_array_equal(a1, a2)
  np.testing.assert_array_equal(ids1, ids2)
  _, ids_b = streets.render_scene('trainB', 3, 24)
  assert not np.array_equal(ids1, ids_b)


def test_geometry_does_not_depend_on_the_size():
  small, _ = streets.render_scene('testA', 5, 32)
  big, _ = streets.render_scene('testA', 5, 64)
  # Every 2x2 block of the big map holds the small map's label at its centre most often.
  agree = np.mean(big[1::2, 1::2] == small)
  assert agree > 0.9


def test_photo_shows_each_class_in_its_own_look():
  photos, ids = streets.render_split('trainA', 100, 48)
  means = {}
  for name in ('sky', 'road', 'vegetation', 'terrain'):
    label_id = next(lb.id for lb in labels.LABELS if lb.name == name)
    means[name] = photos[ids == label_id].astype(float).mean(axis=0)
  assert means['sky'][2] > means['sky'][0] + 40  # Blue.
  assert abs(means['road'][0] - means['road'][2]) < 15  # Gray.
  assert means['vegetation'][1] > means['vegetation'][0] + 20  # Green.
  assert np.linalg.norm(means['vegetation'] - means['terrain']) > 30


@pytest.mark.parametrize('split, other', [('testA', 1), ('testB', 0)])
def test_unaligned_test_splits_carry_the_other_domain_as_truth(split, other):
  images, gt = synthetic.load_split('streets', split, SIZE)
  pair = synthetic.load_pairs('streets', 'test', SIZE) if split == 'testA' else None
  if pair is not None:
    np.testing.assert_array_equal(images, pair[0])
    np.testing.assert_array_equal(gt, pair[1])
  photos, ids = streets.render_split(split, synthetic.NUM_TEST, SIZE)
  label_maps = streets.colors(ids)
  mine, theirs = (photos, label_maps) if split == 'testA' else (label_maps, photos)
  np.testing.assert_array_equal(images, mine)
  np.testing.assert_array_equal(gt, theirs)
  assert synthetic.load_split('streets', 'trainA', SIZE)[1] is None


def test_streets_is_a_valid_source_both_ways():
  config_checks.validate(_config())
  config_checks.validate(_config(dataset_mode='aligned', method='pix2pix'))
  ds, _ = ip.create_train_dataset(_config())
  batch = next(iter(ds.as_numpy_iterator()))
  assert batch['A'].shape == batch['B'].shape == (4, SIZE, SIZE, 3)
  aligned = _config(dataset_mode='aligned')
  views = _take(ip.create_eval_dataset(aligned, 'B', max_images=2), 2)
  photos, label_maps = synthetic.load_pairs('streets', 'test', SIZE)
  # The B view (labels→photo's input) is the label map, its truth the photo.
  np.testing.assert_array_equal(_u8(views[0]['image'][0]), label_maps[0])
  np.testing.assert_array_equal(_u8(views[0]['gt'][0]), photos[0])


# --- Cityscapes folders as the official prepare_cityscapes_dataset.py writes them -----


def _write_official_cityscapes(root, phase, count, side=32, seed=0):
  """photo|label side by side in PHASE/, photos in PHASEA/, label maps in PHASEB/."""
  rng = np.random.default_rng(seed)
  for d in ('', 'A', 'B'):
    os.makedirs(os.path.join(root, phase + d), exist_ok=True)
  truth = []
  for i in range(count):
    ids = np.repeat(rng.integers(0, 19, size=(side // 8, side // 8)), 8, 0).repeat(8, 1)
    label = labels.colorize(ids)
    photo = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
    both = np.concatenate([photo, label], axis=1)
    kw = dict(format='JPEG', subsampling=0, quality=100)
    Image.fromarray(both).save(os.path.join(root, phase, f'{i}.jpg'), **kw)
    Image.fromarray(photo).save(os.path.join(root, phase + 'A', f'{i}_A.jpg'), **kw)
    Image.fromarray(label).save(os.path.join(root, phase + 'B', f'{i}_B.jpg'), **kw)
    truth.append(ids)
  return np.stack(truth)


def test_official_cityscapes_folder_loads_as_pairs(tmp_path):
  root = str(tmp_path)
  _write_official_cityscapes(root, 'train', 3)
  truth = _write_official_cityscapes(root, 'test', 2, seed=1)
  config = _config(dataset=f'folder:{root}', dataset_mode='aligned', method='pix2pix')
  assert paired.num_pairs(config, 'train') == 3
  ds, count, _ = paired.pair_dataset(config, 'test')
  pairs = _take(ds, 5)
  assert count == 2 and [p['name'] for p in pairs] == [b'0', b'1']
  for pair, ids in zip(pairs, truth):
    # A is the photo (left), B the label map, read back through JPEG to its classes.
    np.testing.assert_array_equal(labels.colors_to_train_ids(pair['B']), ids)
  # The unaligned folders of the same layout load as CycleGAN's domains.
  unaligned = _config(dataset=f'folder:{root}')
  info = ip.dataset_info(unaligned)
  assert info.num_a == info.num_b == 3


def test_official_folder_gets_unaligned_truth(tmp_path):
  root = str(tmp_path)
  _write_official_cityscapes(root, 'train', 2)
  truth = _write_official_cityscapes(root, 'test', 3, seed=2)
  counts = pair_folders.unaligned_with_truth(root)
  assert counts == {'testA_gt': 3, 'testB_gt': 3}
  assert sorted(os.listdir(os.path.join(root, 'testA_gt'))) == [
    '0_A.jpg',
    '1_A.jpg',
    '2_A.jpg',
  ]
  config = _config(dataset=f'folder:{root}')
  assert ip.dataset_info(config).has_ground_truth
  views = _take(ip.create_eval_dataset(config, 'A'), 5)
  assert len(views) == 3
  for view, ids in zip(views, truth):
    # testA's truth is its label map: decodes to the classes it was drawn from.
    np.testing.assert_array_equal(labels.colors_to_train_ids(_u8(view['gt'][0])), ids)
  assert pair_folders.unaligned_with_truth(root) == counts  # Again: nothing changes.
  outcome = pair_folders.main(['pair_folders', root])
  assert outcome.line.endswith(
    'testA_gt/ holds the truth of 3 testA images and testB_gt/ of 3 testB images.'
  )
  assert outcome.data['testB_gt'] == 3


def test_side_by_side_only_folder_is_cut_into_domains(tmp_path):
  root = str(tmp_path)
  for phase in ('train', 'val'):
    _write_official_cityscapes(root, phase, 2)
    for d in 'AB':
      shutil.rmtree(os.path.join(root, phase + d))
  counts = pair_folders.unaligned_with_truth(root)
  assert counts['train_split'] == counts['test_split'] == 2 and counts['testA_gt'] == 2
  both = np.asarray(Image.open(os.path.join(root, 'val', '1.jpg')).convert('RGB'))
  a = np.asarray(Image.open(os.path.join(root, 'testA', '1.png')))
  np.testing.assert_array_equal(a, both[:, :32])
  gt = np.asarray(Image.open(os.path.join(root, 'testA_gt', '1.png')))
  np.testing.assert_array_equal(gt, both[:, 32:])
  with pytest.raises(ValueError, match='neither trainA'):
    pair_folders.unaligned_with_truth(str(tmp_path / 'testA'))
