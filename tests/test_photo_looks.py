"""The real-photo benchmark: layout, truth, held-out photos, and the folder pipeline."""

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
    str(out), 'texture', size=16, num_train=5, num_test=3, seed=1
  )


def test_every_split_and_its_truth(built):
  images = {split: _read(built, split) for split in photo_looks.SPLITS}
  assert {k: len(v) for k, v in images.items()} == {
    'trainA': 5,
    'trainB': 5,
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


def test_the_same_seed_builds_the_same_dataset(built, tmp_path):
  again = photo_looks.write_dataset(
    str(tmp_path), 'texture', size=16, num_train=5, num_test=3, seed=1
  )
  for split in photo_looks.SPLITS:
    for a, b in zip(_read(built, split), _read(again, split)):
      np.testing.assert_array_equal(a, b)


def test_test_photos_are_held_out_of_training():
  assert not set(photo_looks.TRAIN_PHOTOS) & set(photo_looks.TEST_PHOTOS)
  for name in photo_looks.TRAIN_PHOTOS + photo_looks.TEST_PHOTOS:
    assert os.path.isfile(os.path.join(photo_looks.photo_dir(), name)), name


@pytest.mark.parametrize('name', sorted(photo_looks.LOOKS))
def test_each_look_changes_the_photo_and_stays_in_range(name):
  photo = photo_looks.load_photo('coffee.png', 16)[:32, :32]
  styled = photo_looks.LOOKS[name](photo)
  assert styled.shape == photo.shape
  assert styled.min() >= 0.0 and styled.max() <= 1.0
  assert np.mean(np.abs(styled - photo)) > 0.03


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
