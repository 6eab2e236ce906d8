"""Tests of the FCN-score: the segmenter, its cache, the scores and the command."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from cyclegan_jax.data import labels
from cyclegan_jax.data import streets
from cyclegan_jax.evaluation import fcn_score
from cyclegan_jax.evaluation import segmentation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STREETS = 'synthetic:streets'
TINY = fcn_score.Settings(size=16, width=4, depth=2, steps=3, batch_size=4)


def test_streets_pairs_are_exact():
  photos, ids = fcn_score.benchmark_pairs(STREETS, 'test', 16)
  ref_photos, ref_ids = streets.render_split('testA', len(photos), 16)
  np.testing.assert_array_equal(photos, ref_photos)
  np.testing.assert_array_equal(ids, streets.train_ids(ref_ids))


def test_other_sources_are_refused_in_one_line(tmp_path):
  with pytest.raises(ValueError, match='needs photos with Cityscapes label maps'):
    fcn_score.load_or_train('synthetic:shapes', TINY, cache=str(tmp_path))
  with pytest.raises(ValueError, match='multiple of 4'):
    fcn_score.Settings(size=18, depth=2).check()


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
  """(a segmenter trained for 3 steps, its cache folder), once for the module."""
  cache = str(tmp_path_factory.mktemp('segmenters'))
  return fcn_score.load_or_train(STREETS, TINY, cache=cache), cache


def test_trained_once_then_loaded_from_the_cache(tiny, monkeypatch):
  first, cache = tiny
  assert first.path.startswith(cache)
  info = json.loads(open(os.path.join(first.path, 'info.json')).read())
  assert info['settings']['steps'] == 3 and info['train_pairs'] == 600

  def no_training(*args, **kwargs):
    raise AssertionError('trained again')

  monkeypatch.setattr(fcn_score, 'train', no_training)
  again = fcn_score.load_or_train(STREETS, TINY, cache=cache)
  assert again.path == first.path
  for a, b in zip(_leaves(first.params), _leaves(again.params), strict=True):
    np.testing.assert_array_equal(a, b)
  # Other settings: another folder, trained anew.
  other = fcn_score.cache_key(STREETS, fcn_score.Settings(**{**TINY.__dict__, 'seed': 1}))
  assert other != os.path.basename(first.path)


def _leaves(tree):
  import jax  # pylint: disable=g-import-not-at-top

  return jax.tree.leaves(tree)


def test_labels_to_photo_scores_segment_the_photos_at_the_label_size(tiny):
  model = tiny[0]
  photos, ids = fcn_score.benchmark_pairs(STREETS, 'test', 16)
  classes = fcn_score.benchmark_classes(STREETS)
  direct = segmentation.score_label_maps(ids, model.segment(photos), classes=classes)
  scored = fcn_score.score_labels_to_photo(photos, ids, model, classes=classes)
  assert scored['class_iou'] == pytest.approx(direct['class_iou'])
  assert fcn_score.ceiling(STREETS, model, classes=classes)['pixel_acc'] == pytest.approx(
    direct['pixel_acc']
  )
  # Photos and label maps of twice the size: the segmenter still sees its 16 px, and
  # its labels are scored at 32 px.
  big = np.stack([np.asarray(Image.fromarray(p).resize((32, 32))) for p in photos])
  big_ids = ids.repeat(2, axis=1).repeat(2, axis=2)
  scaled = fcn_score.score_labels_to_photo(big, big_ids, model, classes=classes)
  assert scaled['pixel_acc'] == pytest.approx(direct['pixel_acc'], abs=0.05)
  with pytest.raises(ValueError, match='one photo per label map'):
    fcn_score.score_labels_to_photo(photos[:3], ids[:4], model)


def test_segment_pads_sides_that_do_not_divide(tiny):
  photos = np.zeros((3, 13, 18, 3), np.uint8)
  assert tiny[0].segment(photos).shape == (3, 13, 18)


@pytest.mark.slow
def test_the_segmenter_learns_streets():
  settings = fcn_score.Settings(size=16, width=8, depth=2, steps=150, batch_size=8)
  model = fcn_score.train(*fcn_score.benchmark_pairs(STREETS, 'train', 16), settings)
  photos, ids = fcn_score.benchmark_pairs(STREETS, 'test', 16)
  result = fcn_score.score_labels_to_photo(
    photos, ids, model, classes=fcn_score.benchmark_classes(STREETS)
  )
  # The most frequent class covers about a quarter of the pixels.
  assert result['pixel_acc'] > 0.7
  # Photos of other scenes, same style, score worse: it reads the photo.
  shuffled = fcn_score.score_labels_to_photo(np.roll(photos, 1, axis=0), ids, model)
  assert shuffled['pixel_acc'] < result['pixel_acc'] - 0.1


def _write_eval_folder(folder, fakes, reals, gts):
  os.makedirs(folder, exist_ok=True)
  for i, (fake, real, gt) in enumerate(zip(fakes, reals, gts)):
    for kind, image in (('fake', fake), ('real', real), ('gt', gt)):
      Image.fromarray(image).save(
        os.path.join(folder, f'streets_test_{i:04d}_{kind}.png')
      )


def test_photo_to_labels_of_an_eval_folder(tmp_path):
  photos, ids = fcn_score.benchmark_pairs(STREETS, 'test', 16)
  truth = labels.colorize(ids)
  _write_eval_folder(tmp_path / 'AtoB', truth[:5], photos[:5], truth[:5])
  perfect = fcn_score.run(STREETS, images=str(tmp_path / 'AtoB'), task='photo_to_labels')
  assert perfect['images'] == 5 and perfect['scores']['pixel_acc'] == pytest.approx(1.0)
  _write_eval_folder(tmp_path / 'bad', truth[1:6], photos[:5], truth[:5])
  worse = fcn_score.run(STREETS, images=str(tmp_path / 'bad'), task='photo_to_labels')
  assert worse['scores']['class_iou'] < 0.9
  names, _, read_ids = fcn_score.read_eval_images(
    str(tmp_path / 'AtoB'), 'photo_to_labels'
  )
  assert names[0] == 'streets_test_0000'
  np.testing.assert_array_equal(read_ids, ids[:5])
  with pytest.raises(ValueError, match='no <name>_fake'):
    fcn_score.read_eval_images(str(tmp_path), 'photo_to_labels')


def _command(*args):
  return subprocess.run(
    [sys.executable, '-m', 'cyclegan_jax.evaluation.fcn_score', *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
    env={**os.environ, 'PYTHONPATH': REPO},
  )


@pytest.mark.slow
def test_command_scores_an_eval_folder_and_reports_the_ceiling(tmp_path):
  photos, ids = fcn_score.benchmark_pairs(STREETS, 'test', 16)
  _write_eval_folder(tmp_path / 'BtoA', photos[:6], labels.colorize(ids[:6]), photos[:6])
  tiny = ['--seg_size=16', '--seg_width=4', '--seg_depth=2', '--seg_steps=2']
  result = _command(
    f'--dataset={STREETS}',
    f'--images={tmp_path / "BtoA"}',
    f'--cache_dir={tmp_path / "cache"}',
    '--json',
    *tiny,
  )
  assert result.returncode == 0, result.stderr
  line, data = result.stdout.strip().splitlines()[-2:]
  assert line.startswith('FCN-score of 6 images: per-pixel acc')
  data = json.loads(data)
  assert data['images'] == 6 and set(data['ceiling']) >= {'pixel_acc', 'class_iou'}
  # The eval folder's real photos are the fakes here: the same scores.
  assert data['ceiling_images'] == data['scores']
  assert '; their real photos: per-pixel acc' in line
  bad = _command('--dataset=synthetic:shapes', f'--cache_dir={tmp_path / "cache"}', *tiny)
  assert bad.returncode == 1
  assert bad.stderr.strip().splitlines()[-1].startswith('fcn_score: error: --dataset=')
