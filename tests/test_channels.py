"""1-channel and mixed-channel domains: conversion, data, networks, pools, checks."""

import logging
import os

import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from configs import default
from configs import tiny
from cyclegan_jax.cli import config_checks
from cyclegan_jax.data import channels
from cyclegan_jax.data import input_pipeline as ip
from cyclegan_jax.data import synthetic
from cyclegan_jax.deploy import inference
from cyclegan_jax.methods import image_pool
from cyclegan_jax.train import loop as train
from cyclegan_jax.train import step as step_lib


def _rgb(h, w, seed):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_luma_is_pils_convert_l_and_keeps_gray_files():
  rgb = _rgb(17, 23, 0)
  want = np.asarray(Image.fromarray(rgb).convert('L'))[..., None]
  np.testing.assert_array_equal(channels.luma8(rgb), want)
  np.testing.assert_array_equal(ip.match_channels(tf.constant(rgb), 1).numpy(), want)
  gray = np.repeat(want, 3, axis=-1)  # A gray file as PIL's convert('RGB') reads it.
  assert channels.is_gray(gray) and not channels.is_gray(rgb)
  np.testing.assert_array_equal(channels.match8(gray, 1), want)
  np.testing.assert_array_equal(channels.match8(want, 3), gray)
  floats = rgb.astype(np.float32) / 127.5 - 1
  assert channels.to_channels(floats, 1).shape == (17, 23, 1)
  np.testing.assert_allclose(
    channels.to_channels(floats, 1), want / 127.5 - 1, atol=1 / 127.5
  )


def _config(**overrides):
  config = default.get_config()
  config.unlock()
  config.update(dict(load_size=36, crop_size=32, batch_size=2, shuffle_buffer_size=100))
  config.update(overrides)
  return config


def test_folder_domains_keep_their_channels_and_log_luma_once(tmp_path, caplog):
  for split, n in (('trainA', 3), ('trainB', 2), ('testA', 2), ('testB', 2)):
    os.makedirs(tmp_path / split)
    os.makedirs(tmp_path / f'{split}_gt', exist_ok=True)
    for i in range(n):
      Image.fromarray(_rgb(40, 40, i)).save(tmp_path / split / f'c{i}.png')  # Colour.
    Image.fromarray(_rgb(40, 40, 9)[..., 0]).save(tmp_path / split / 'g.png')  # Gray.
  for d in 'AB':
    for name in os.listdir(tmp_path / f'test{d}'):
      Image.fromarray(_rgb(40, 40, 5)).save(tmp_path / f'test{d}_gt' / name)
  config = _config(dataset=f'folder:{tmp_path}')
  config.model.input_nc = 1
  ip._LUMA_LOGGED.clear()
  with caplog.at_level(logging.INFO, logger='absl'):
    ds, _ = ip.create_train_dataset(config)
    for batch in ds.take(4).as_numpy_iterator():
      assert batch['A'].shape == (2, 32, 32, 1) and batch['B'].shape == (2, 32, 32, 3)
  assert caplog.text.count('converted to luma') == 1  # trainA's colour files.
  gray = np.asarray(Image.open(tmp_path / 'testA' / 'g.png'))
  for ex in ip.create_eval_dataset(config, 'A').as_numpy_iterator():
    assert ex['image'].shape == (1, 40, 40, 1) and ex['gt'].shape == (1, 40, 40, 3)
    if ex['name'][0] == b'g':  # A gray file is read unchanged.
      np.testing.assert_array_equal(np.round((ex['image'][0, ..., 0] + 1) * 127.5), gray)
  for ex in ip.create_eval_dataset(config, 'B').as_numpy_iterator():
    assert ex['image'].shape == (1, 40, 40, 3) and ex['gt'].shape == (1, 40, 40, 1)
  assert ip.fixed_test_images(config, 'A', 2).shape == (2, 32, 32, 1)


@pytest.mark.parametrize('task,gray', [('gray2color', 'A'), ('color2gray', 'B')])
def test_synthetic_gray_tasks_have_ground_truth_both_ways(task, gray):
  color = 'B' if gray == 'A' else 'A'
  assert synthetic.domain_channels(task) == {gray: 1, color: 3}
  images, gt = synthetic.load_split(task, f'test{gray}', 24)
  assert images.shape[-1] == 1 and gt.shape[-1] == 3
  np.testing.assert_array_equal(images, channels.luma8(gt))  # Gray = luma of colour.
  images, gt = synthetic.load_split(task, f'test{color}', 24)
  assert images.shape[-1] == 3 and gt.shape[-1] == 1
  palette = np.round(synthetic._PALETTE_A * 255).astype(np.uint8)
  lumas = set(channels.luma8(palette)[:, 0].tolist())
  assert len(lumas) == 3  # Each colour has its own gray: colourisation is learnable.


def test_config_checks_channels_and_identity():
  config = tiny.get_config()
  config.model.input_nc = 2
  with pytest.raises(ValueError, match=r'config.model.input_nc=2: must be 1 or 3'):
    config_checks.validate(config)
  config.model.input_nc = 1
  with pytest.raises(ValueError) as e:
    config_checks.validate(config)
  message = str(e.value)
  assert 'lambda_identity=0.5' in message and '--config.loss.lambda_identity=0' in message
  assert '\n' not in message
  config.loss.lambda_identity = 0.0
  config_checks.validate(config)


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_mixed_networks_pools_and_step():
  config = tiny.get_config()
  config.model.input_nc, config.loss.lambda_identity, config.pool_size = 1, 0.0, 2
  networks = step_lib.create_networks(config, epoch_length=10)
  assert networks.generator.output_channels == 3
  assert networks.generator_for('G_B').output_channels == 1
  networks = networks.__class__(
    **{
      **vars(networks),
      'generator': networks.generator.clone(num_blocks=1),
      'generator_b': networks.generator_b.clone(num_blocks=1),
    }
  )
  mesh = jax.make_mesh((1,), ('data',), devices=jax.devices()[:1])
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=(16, 16, 1), pool_size=2
  )
  p = state.params
  assert p['G_A']['stem']['kernel'].shape[2] == 1 and p['G_A']['head']['bias'].shape == (
    3,
  )
  assert p['G_B']['stem']['kernel'].shape[2] == 3 and p['G_B']['head']['bias'].shape == (
    1,
  )
  assert p['D_A']['conv_0']['kernel'].shape[2] == 3  # Judges B images.
  assert p['D_B']['conv_0']['kernel'].shape[2] == 1  # Judges A images.
  assert state.pools['A'].images.shape == (2, 16, 16, 1)
  assert state.pools['B'].images.shape == (2, 16, 16, 3)
  step = step_lib.make_parallel_train_step(networks, mesh, state)
  rng = np.random.default_rng(0)
  batch = {
    'A': rng.uniform(-1, 1, (4, 16, 16, 1)).astype(np.float32),
    'B': rng.uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32),
  }
  for b in step_lib.device_batches([batch, batch], mesh):
    state, metrics = step(state, b)
  assert np.isfinite(float(metrics['loss_G']))
  assert int(state.pools['A'].count[0]) == 2


def test_pool_keeps_one_channel_images():
  pool = image_pool.init_pool(3, (8, 8, 1))
  images = np.linspace(-1, 1, 4 * 64).reshape(4, 8, 8, 1).astype(np.float32)
  pool, out = image_pool.query(pool, images, jax.random.key(0))
  assert pool.images.shape == (3, 8, 8, 1) and out.shape == (4, 8, 8, 1)


def test_sample_grid_shows_one_channel_as_gray_rgb():
  one, three = np.zeros((2, 8, 8, 1), np.float32), np.zeros((2, 8, 8, 3), np.float32)
  images = dict(
    real_A=one, fake_B=three, rec_A=one, real_B=three, fake_A=one, rec_B=three
  )
  assert train.sample_grid(images).shape == (16, 48, 3)


def test_channel_mismatch_is_one_line_naming_both():
  requested = default.get_config().model
  requested.output_nc = 1
  with pytest.raises(inference.ArchitectureMismatchError) as e:
    inference.check_channels({'A': 3, 'B': 3}, requested, 'DIR/checkpoints/2')
  assert str(e.value).startswith(
    'The checkpoint in DIR/checkpoints/2 was trained with model.output_nc=3, '
    'this config has 1'
  )
  assert '\n' not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize(
  'task,field', [('gray2color', 'input_nc'), ('color2gray', 'output_nc')]
)
def test_one_channel_domain_trains_evaluates_and_translates(task, field, tmp_path):
  from cyclegan_jax.deploy import translate  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

  config = tiny.get_config()
  config.dataset = f'synthetic:{task}'
  config.model[field] = 1
  config.loss.lambda_identity = 0.0
  workdir = str(tmp_path / 'w')
  train.train_and_evaluate(config, workdir)
  summary = evaluate.evaluate(config, workdir)
  for direction in ('AtoB', 'BtoA'):
    assert np.isfinite(summary[f'{direction}/psnr'])
    assert np.isfinite(summary[f'{direction}/ssim'])
  gray = synthetic.GRAY_DOMAIN[task]
  images = tmp_path / 'w' / 'eval' / 'step_2' / 'images'
  fake_mode = {
    'AtoB': 'L' if gray == 'B' else 'RGB',
    'BtoA': 'L' if gray == 'A' else 'RGB',
  }
  for direction, mode in fake_mode.items():
    fake = sorted((images / direction).glob('*_fake.png'))[0]
    assert Image.open(fake).mode == mode
  # translate: RGB files in, 1-channel PNGs out where the output domain is gray.
  inputs = tmp_path / 'in'
  inputs.mkdir()
  Image.fromarray(_rgb(20, 28, 1)).save(inputs / 'x.png')
  for direction, mode in fake_mode.items():
    out = tmp_path / f'out_{direction}'
    translate.run(
      workdir=workdir,
      input_path=str(inputs),
      output=str(out),
      direction=direction,
      progress=False,
    )
    with Image.open(out / 'x.png') as im:
      assert im.mode == mode and im.size == (28, 20)
  # Resuming with the other channel count is one line naming both values.
  config.model[field] = 3
  with pytest.raises(train.NetworkMismatchError, match=f'model.{field}'):
    train.train_and_evaluate(config, workdir)
  with pytest.raises(inference.ArchitectureMismatchError, match=f'{field}=1, this'):
    evaluate.evaluate(config, workdir)


def test_fid_reads_one_channel_images_as_gray_rgb():
  from cyclegan_jax.evaluation import inception  # pylint: disable=g-import-not-at-top

  gray = np.arange(20, dtype=np.uint8).reshape(4, 5, 1)
  rgb = inception.to_unit(gray)
  assert rgb.shape == (4, 5, 3)
  np.testing.assert_array_equal(rgb, inception.to_unit(np.repeat(gray, 3, axis=-1)))
  assert inception.to_unit(gray[..., 0]).shape == (4, 5, 3)
