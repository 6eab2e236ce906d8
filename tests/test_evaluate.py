"""Evaluation of a tiny trained checkpoint: files, gallery links, metrics, errors."""

import glob
import json
import logging
import os
import re

import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from cyclegan_jax.deploy import inference
from cyclegan_jax.evaluation import eval_dirs
from cyclegan_jax.evaluation import evaluate
from cyclegan_jax.train import checkpoints
from tests import tiny_run

DIRECTIONS = ('AtoB', 'BtoA')
KEYS = (
  'cycle_l1',
  'psnr',
  'ssim',
  'psnr_identity',
  'ssim_identity',
  'grid',
  'grid_gt',
)


class _Records(logging.Handler):
  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@pytest.fixture(scope='module')
def evaluated(trained_workdir):
  """(workdir, metrics, log messages) of evaluating the shared tiny run.

  The command-line config asks for another ngf: the checkpoint's must win, with a note.
  """
  workdir = trained_workdir
  config = tiny_run.tiny_config()
  config.model.ngf = 8
  records = _Records()
  logging.getLogger('absl').addHandler(records)
  try:
    result = evaluate.evaluate(config, workdir)
  finally:
    logging.getLogger('absl').removeHandler(records)
  return workdir, result, records.messages


def step_dir(workdir):
  return os.path.join(workdir, 'eval', 'step_2')


def test_writes_real_fake_rec_and_truth_pngs_at_full_size(evaluated):
  workdir, _, _ = evaluated
  for direction in DIRECTIONS:
    files = sorted(os.listdir(os.path.join(step_dir(workdir), 'images', direction)))
    assert len(files) == 6 * 4  # eval.max_images = 6; real, fake, rec, gt.
    split = 'testA' if direction == 'AtoB' else 'testB'
    for kind in ('real', 'fake', 'rec', 'gt'):
      path = os.path.join(
        step_dir(workdir), 'images', direction, f'colors_{split}_0005_{kind}.png'
      )
      with Image.open(path) as im:
        assert im.size == (20, 20) and im.mode == 'RGB'  # load_size, uncropped.


def test_gallery_links_resolve_and_cover_every_image(evaluated):
  workdir, _, _ = evaluated
  with open(os.path.join(step_dir(workdir), 'index.html'), encoding='utf-8') as f:
    page = f.read()
  links = re.findall(r'(?:src|href)="([^"]+)"', page)
  assert len(links) == 2 * 2 * 6 * 4  # src and href of 4 pictures, 6 rows, 2 directions.
  for link in links:
    assert not os.path.isabs(link)
    assert os.path.isfile(os.path.join(step_dir(workdir), link)), link
  for direction in DIRECTIONS:
    assert page.count(f'images/{direction}/') == 2 * 6 * 4
  assert 'rec (cycled back)' in page and 'ground truth' in page


def test_metrics_keys_ranges_and_json(evaluated):
  workdir, result, _ = evaluated
  assert set(result) == {f'{d}/{k}' for d in DIRECTIONS for k in KEYS + ('checkerboard',)}
  for direction in DIRECTIONS:
    assert 0 <= result[f'{direction}/cycle_l1'] <= 2
    assert 0 <= result[f'{direction}/grid'] <= 1
    assert result[f'{direction}/checkerboard'] == pytest.approx(
      result[f'{direction}/grid'] / result[f'{direction}/grid_gt']
    )
    for key in ('psnr', 'psnr_identity'):
      assert 0 < result[f'{direction}/{key}'] < 100
    for key in ('ssim', 'ssim_identity'):
      assert -1 <= result[f'{direction}/{key}'] <= 1
  with open(os.path.join(step_dir(workdir), 'metrics.json')) as f:
    report = json.load(f)
  assert report['step'] == 2
  assert report['num_images'] == {'AtoB': 6, 'BtoA': 6}
  assert report['metrics'] == pytest.approx(result)
  assert report['model']['ngf'] == tiny_run.NGF
  per_image = report['per_image']['AtoB']
  assert len(per_image) == 6
  assert np.mean([v['psnr'] for v in per_image.values()]) == pytest.approx(
    result['AtoB/psnr']
  )


def test_psnr_is_that_of_the_saved_pngs(evaluated):
  workdir, _, _ = evaluated
  with open(os.path.join(step_dir(workdir), 'metrics.json')) as f:
    per_image = json.load(f)['per_image']['BtoA']
  name = 'colors_testB_0003'
  load = lambda kind: (
    np.asarray(
      Image.open(os.path.join(step_dir(workdir), 'images', 'BtoA', f'{name}_{kind}.png')),
      np.float64,
    )
    / 255
  )
  for kind, key in (('fake', 'psnr'), ('real', 'psnr_identity')):
    mse = np.mean((load(kind) - load('gt')) ** 2)
    assert per_image[name][key] == pytest.approx(10 * np.log10(1 / mse), abs=1e-3)


def test_tensorboard_scalars_at_the_checkpoint_step(evaluated):
  workdir, result, _ = evaluated
  events = glob.glob(os.path.join(workdir, 'eval', 'events.out.tfevents.*'))
  assert events
  seen = {}
  for path in events:
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        seen[value.tag] = (event.step, float(tf.make_ndarray(value.tensor)))
  assert seen['AtoB/psnr'][0] == 2
  assert seen['AtoB/psnr'][1] == pytest.approx(result['AtoB/psnr'], rel=1e-5)


def test_command_line_model_fields_yield_to_the_checkpoint(evaluated):
  _, _, messages = evaluated
  assert any('model.ngf' in m and "checkpoint's" in m for m in messages), messages


def test_four_device_checkpoint_restores_on_one_device(trained_workdir):
  workdir = trained_workdir
  assert jax.device_count() == 4
  manager = checkpoints.create_manager(workdir, create=False)
  # Written by 4 devices: the per-device keys have one row per device.
  assert checkpoints.per_device_shapes(manager, 2)['rng'] == (4, 2)
  manager.close()
  restored = inference.restore(workdir)
  leaves = jax.tree.leaves(restored.params)
  assert set(restored.params) == {'G_A', 'G_B'}
  assert leaves and all(leaf.devices() == {jax.local_devices()[0]} for leaf in leaves)
  assert restored.step == 2 and restored.model_config.ngf == tiny_run.NGF


def test_no_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='No checkpoint in .*Train first'):
    evaluate.evaluate(tiny_run.tiny_config(), str(tmp_path))


def test_missing_step_lists_the_available_ones(trained_workdir):
  config = tiny_run.tiny_config()
  config.eval.step = 7
  with pytest.raises(FileNotFoundError, match=r'step 7 .*available steps: \[2\]'):
    evaluate.evaluate(config, trained_workdir)


@pytest.mark.parametrize('field,value', [('ngf', 8), ('netG', 'resnet_9blocks')])
def test_params_that_do_not_fit_the_config_name_the_field(
  tmp_path, field, value, trained_workdir
):
  params, config, _ = checkpoints.restore_params(trained_workdir)
  config['model'][field] = value  # A config that lies about the saved networks.
  manager = checkpoints.create_manager(str(tmp_path))
  checkpoints.save(manager, 5, params=jax.device_get(params), config=config)
  manager.wait_until_finished()
  manager.close()
  with pytest.raises(
    inference.ArchitectureMismatchError,
    match=rf'model\.{field}={value!r} .*G_A parameters have {field}=',
  ):
    evaluate.evaluate(tiny_run.tiny_config(), str(tmp_path))


def test_rows_round_trip_through_the_cross_process_encoding():
  keys = ['psnr', 'ssim']
  parts = [
    evaluate.encode_rows(['a', 'b'], {'psnr': [1.0, 2.0], 'ssim': [0.1, 0.2]}, keys, 2),
    evaluate.encode_rows(['c€'], {'psnr': [3.0], 'ssim': [0.3]}, keys, 2),
  ]
  names, values = evaluate.decode_rows(parts, keys)
  assert names == ['a', 'b', 'c€']
  assert values == {'psnr': [1.0, 2.0, 3.0], 'ssim': [0.1, 0.2, 0.3]}


def test_the_validation_split_is_scored_beside_the_test_split(evaluated):
  workdir, test_metrics, _ = evaluated
  config = tiny_run.tiny_config()
  config.eval.split = 'val'
  val_metrics = evaluate.evaluate(config, workdir)
  assert set(val_metrics) == set(test_metrics)
  assert val_metrics['AtoB/psnr'] != test_metrics['AtoB/psnr']  # Other scenes.
  val_dir = os.path.join(workdir, 'eval', 'val_step_2')
  report = json.load(open(os.path.join(val_dir, 'metrics.json')))
  assert report['split'] == 'val' and report['metrics'] == pytest.approx(val_metrics)
  assert any(
    'colors_valA_' in f for f in os.listdir(os.path.join(val_dir, 'images', 'AtoB'))
  )
  # The test evaluation of the same step is still there, untouched.
  test_report = json.load(open(os.path.join(step_dir(workdir), 'metrics.json')))
  assert test_report['split'] == 'test'
  assert test_report['metrics'] == pytest.approx(test_metrics)
  # Study scripts find each split's newest evaluation by name.
  assert eval_dirs.latest(workdir, 'val') == val_dir
  assert eval_dirs.latest(workdir) == step_dir(workdir)


def test_the_newest_evaluation_of_a_split_and_none(tmp_path):
  for name in ('step_2', 'step_10', 'val_step_7', 'step_x', '.step_11.partial'):
    os.makedirs(tmp_path / 'eval' / name)
  assert eval_dirs.scored_steps(str(tmp_path)) == [2, 10]
  assert eval_dirs.latest(str(tmp_path)) == str(tmp_path / 'eval' / 'step_10')
  assert eval_dirs.latest(str(tmp_path), 'val') == str(tmp_path / 'eval' / 'val_step_7')
  with pytest.raises(FileNotFoundError, match='score the run first'):
    eval_dirs.latest(str(tmp_path / 'nowhere'), 'val')
