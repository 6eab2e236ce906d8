"""The real-photo benchmark: layout, truth, held-out photos, the looks, and the folder
pipeline with its validation split."""

import os

import numpy as np
from PIL import Image
import pytest

from configs import tiny
from cyclegan_jax.data import input_pipeline
from cyclegan_jax.studies import photo_looks


def _read(root, split):
  folder = os.path.join(root, split)
  return [
    np.asarray(Image.open(os.path.join(folder, f))) for f in sorted(os.listdir(folder))
  ]


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  out = tmp_path_factory.mktemp('looks')
  return photo_looks.write_dataset(
    str(out), 'texture', size=16, num_train=5, num_test=3, seed=1, num_val=4
  )


def test_every_split_and_its_truth(built):
  images = {split: _read(built, split) for split in photo_looks.SPLITS}
  assert {k: len(v) for k, v in images.items()} == {
    'trainA': 5,
    'trainB': 5,
    'valA': 4,
    'valB': 4,
    'valA_gt': 4,
    'valB_gt': 4,
    'testA': 3,
    'testB': 3,
    'testA_gt': 3,
    'testB_gt': 3,
  }
  assert all(
    im.shape == (16, 16, 3) and im.dtype == np.uint8 for v in images.values() for im in v
  )
  for real, truth in zip(images['testA'], images['testA_gt']):
    expected = photo_looks.to_uint8(photo_looks.texture_look(real / np.float32(255)))
    np.testing.assert_array_equal(truth, expected)
  for styled, truth in zip(images['testB'], images['testB_gt']):
    expected = photo_looks.to_uint8(photo_looks.texture_look(truth / np.float32(255)))
    np.testing.assert_array_equal(styled, expected)
  for real, truth in zip(images['valA'], images['valA_gt']):
    expected = photo_looks.to_uint8(photo_looks.texture_look(real / np.float32(255)))
    np.testing.assert_array_equal(truth, expected)
  for styled, truth in zip(images['valB'], images['valB_gt']):
    expected = photo_looks.to_uint8(photo_looks.texture_look(truth / np.float32(255)))
    np.testing.assert_array_equal(styled, expected)


def _where(crop, photos):
  """(photo index, y, x) of an exact 8-bit crop in one of `photos`, or None."""
  size = crop.shape[0]
  for i, photo in enumerate(photos):
    windows = np.lib.stride_tricks.sliding_window_view(photo, (size, size, 3))[
      ..., 0, :, :, :
    ]
    hits = np.argwhere(np.all(windows == crop, axis=(-3, -2, -1)))
    if len(hits):
      return (i, *hits[0])
  return None


def test_validation_crops_come_from_unseen_photos_and_training_avoids_the_bands():
  size = 16
  splits = photo_looks.build_splits(
    photo_looks.colour_look, size=size, num_train=24, num_test=2, seed=3, num_val=12
  )

  def photos(names):
    return [photo_looks.to_uint8(photo_looks.load_photo(n, size)) for n in names]

  val_photos = photos(photo_looks.VAL_PHOTOS)
  assert all(_where(c, val_photos) for c in splits['valA'] + splits['valB_gt'])
  # Both validation photos are used.
  assert {_where(c, val_photos)[0] for c in splits['valA']} == {0, 1}
  train_photos = photos(photo_looks.TRAIN_PHOTOS)
  for crop in splits['trainA']:
    i, y, x = _where(crop, train_photos)
    h, w = train_photos[i].shape[:2]
    # Outside the last crop width of the long side (the old validation band).
    assert (x + size <= w - size) if w >= h else (y + size <= h - size)


def test_the_same_seed_builds_the_same_dataset(built, tmp_path):
  again = photo_looks.write_dataset(
    str(tmp_path), 'texture', size=16, num_train=5, num_test=3, seed=1
  )
  for split in photo_looks.SPLITS:
    for a, b in zip(_read(built, split), _read(again, split)):
      np.testing.assert_array_equal(a, b)


def test_test_and_validation_photos_are_held_out_of_training_and_of_each_other():
  train, val, test = (
    set(photo_looks.TRAIN_PHOTOS),
    set(photo_looks.VAL_PHOTOS),
    set(photo_looks.TEST_PHOTOS),
  )
  assert not (train & test or train & val or val & test)
  for name in train | val | test:
    assert os.path.isfile(photo_looks.photo_path(name)), name


@pytest.mark.parametrize('name', sorted(photo_looks.LOOKS))
def test_each_look_changes_the_photo_and_stays_in_range(name):
  photo = photo_looks.load_photo('coffee.png', 16)[:32, :40]
  styled = photo_looks.LOOKS[name](photo)
  assert styled.shape == photo.shape
  assert styled.min() >= 0.0 and styled.max() <= 1.0
  assert np.mean(np.abs(styled - photo)) > 0.03
  # Deterministic and pure: the same output again, the input untouched.
  copy = photo.copy()
  np.testing.assert_array_equal(photo_looks.LOOKS[name](photo), styled)
  np.testing.assert_array_equal(photo, copy)


def _spread_within_colours(photo, styled):
  """Mean std of the look's output over pixels of one and the same 8-bit input colour:
  0 for a look that is a function of each pixel's colour alone."""
  keys = photo_looks.to_uint8(photo).reshape(-1, 3) @ np.array([1, 256, 65536])
  out = styled.reshape(-1, 3)
  _, group, counts = np.unique(keys, return_inverse=True, return_counts=True)
  spreads = [out[group == g].std(axis=0).mean() for g in np.flatnonzero(counts >= 3)]
  return float(np.mean(spreads))


def _flat_share(image):
  """Share of neighbour luma steps under 0.005: flat paint, washes and paper."""
  luma = image @ np.array([0.299, 0.587, 0.114])
  steps = np.concatenate([np.diff(luma, axis=0).ravel(), np.diff(luma, axis=1).ravel()])
  return float(np.mean(np.abs(steps) < 0.005))


def _crop(name):
  photo = photo_looks.load_photo(name, 48)
  return photo_looks.to_uint8(photo[:144, :144]).astype(np.float32) / 255.0


@pytest.mark.parametrize('name', photo_looks.STRUCTURAL_LOOKS)
def test_structural_looks_change_local_structure_not_only_colour(name):
  for photo in map(_crop, ('chelsea.png', 'astronaut.png')):
    styled = photo_looks.LOOKS[name](photo)
    # The same input colour gives different outputs depending on its neighbourhood.
    assert _spread_within_colours(photo, styled) > 0.005
    # The fur's and skin's fine texture goes flat: the gradient statistics change.
    assert _flat_share(styled) > _flat_share(photo) + 0.25


@pytest.mark.parametrize('name', ['colour', 'tone'])
def test_the_structure_measures_see_nothing_in_a_colour_look(name):
  # The check above can fail: a per-pixel colour map has no spread within colours.
  photo = _crop('chelsea.png')
  styled = photo_looks.LOOKS[name](photo)
  assert _spread_within_colours(photo, styled) < 1e-6
  assert _flat_share(styled) < _flat_share(photo) + 0.1


def test_kuwahara_keeps_a_step_edge_and_flattens_noise():
  rng = np.random.default_rng(0)
  image = np.zeros((20, 20, 3), np.float32)
  image[:, 10:] = 1.0
  out = photo_looks.kuwahara(image, 3)
  np.testing.assert_allclose(out, image, atol=1e-6)  # Edges stay where they were.
  noise = 0.5 + 0.1 * rng.standard_normal((20, 20, 3))
  assert photo_looks.kuwahara(noise, 3).std() < 0.5 * noise.std()


def test_the_folder_pipeline_reads_it_with_ground_truth(built):
  config = tiny.get_config()
  config.dataset = f'folder:{built}'
  info = input_pipeline.dataset_info(config)
  assert info.has_ground_truth


def test_bad_arguments_are_one_line_errors(tmp_path):
  with pytest.raises(ValueError, match='Unknown look .sepia.; valid: colour, tone'):
    photo_looks.write_dataset(str(tmp_path), 'sepia')
  with pytest.raises(ValueError, match='--size must be >= 8'):
    photo_looks.write_dataset(str(tmp_path), 'tone', size=4)
  with pytest.raises(ValueError, match='num_val 0'):
    photo_looks.write_dataset(str(tmp_path), 'tone', num_val=0)


def test_evaluation_can_read_the_validation_split(built):
  config = tiny.get_config()
  config.dataset = f'folder:{built}'
  config.eval.split = 'val'
  input_pipeline.check_eval_split(config)
  ds = input_pipeline.create_eval_dataset(config, 'B')
  examples = list(ds.as_numpy_iterator())
  assert len(examples) == 4 and all('gt' in ex for ex in examples)
  first = _read(built, 'valB_gt')[0]
  np.testing.assert_allclose(
    examples[0]['gt'][0], first / np.float32(127.5) - 1.0, atol=1e-6
  )
  # The sample grids keep showing test images.
  assert input_pipeline.fixed_test_images(config, 'A', 2).shape[0] == 2


def test_a_missing_validation_split_is_a_one_line_error(tmp_path, built):
  import shutil

  bare = tmp_path / 'no_val'
  shutil.copytree(built, bare, ignore=shutil.ignore_patterns('val*'))
  config = tiny.get_config()
  config.dataset = f'folder:{bare}'
  config.eval.split = 'val'
  with pytest.raises(ValueError, match=r"eval.split='val', but .* no images in valA/"):
    input_pipeline.check_eval_split(config)
  config.eval.split = 'test'
  input_pipeline.check_eval_split(config)  # Nothing to check on test.


def test_the_paired_set_pairs_each_crop_with_its_look_on_the_unpaired_test_crops(
  built, tmp_path
):
  paired = photo_looks.write_dataset(
    str(tmp_path), 'texture', size=16, num_train=5, num_test=3, seed=1, paired=True
  )
  assert paired.endswith('texture_paired')
  assert sorted(os.listdir(paired)) == ['testA', 'testB', 'trainA', 'trainB']
  for a_split, b_split in (('trainA', 'trainB'), ('testA', 'testB')):
    assert sorted(os.listdir(os.path.join(paired, a_split))) == sorted(
      os.listdir(os.path.join(paired, b_split))
    )
    for real, styled in zip(_read(paired, a_split), _read(paired, b_split)):
      expected = photo_looks.to_uint8(photo_looks.texture_look(real / np.float32(255)))
      np.testing.assert_array_equal(styled, expected)
  # The same test pairs as the unpaired set's testA -> testA_gt.
  for split, unpaired_split in (('testA', 'testA'), ('testB', 'testA_gt')):
    for a, b in zip(_read(paired, split), _read(built, unpaired_split)):
      np.testing.assert_array_equal(a, b)
