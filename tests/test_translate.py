"""Translating users' files: any size, names kept, bad files skipped, converted weights."""

import logging
import os

import jax
import numpy as np
from PIL import Image
import pytest

from cyclegan_jax.deploy import convert
from cyclegan_jax.deploy import inference
from cyclegan_jax.deploy import translate
from cyclegan_jax.evaluation import evaluate
from tests import tiny_run

DATA = os.path.join(os.path.dirname(__file__), 'data')


def write_inputs(folder):
  """Odd sizes, several modes, a duplicate stem, a broken file and a non-image."""
  rng = np.random.default_rng(0)
  rgb = lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  os.makedirs(folder)
  Image.fromarray(rgb(37, 53)).save(os.path.join(folder, 'odd.png'))
  Image.fromarray(rgb(37, 53)).save(os.path.join(folder, 'twin.jpg'))
  Image.fromarray(rgb(37, 53)).save(os.path.join(folder, 'twin.png'))
  Image.fromarray(rng.integers(0, 256, (37, 53, 4), dtype=np.uint8), 'RGBA').save(
    os.path.join(folder, 'alpha.png')
  )
  Image.fromarray(rng.integers(0, 65536, (37, 53), dtype=np.uint16)).save(
    os.path.join(folder, 'deep16.png')
  )
  Image.fromarray(rgb(21, 18)).save(os.path.join(folder, 'small.bmp'))
  with open(os.path.join(folder, 'broken.jpg'), 'wb') as f:
    f.write(b'\xff\xd8\xff\xe0 not really a jpeg')
  with open(os.path.join(folder, 'notes.txt'), 'w') as f:
    f.write('not an image')


@pytest.fixture(scope='module')
def restored(trained_workdir):
  return inference.restore(trained_workdir, generators=('G_A', 'G_B'))


def test_folder_translation_keeps_sizes_and_names_and_skips_bad_files(
  restored, tmp_path, caplog
):
  inputs, out = str(tmp_path / 'in'), str(tmp_path / 'out')
  write_inputs(inputs)
  paths = translate.list_inputs(inputs)
  assert [os.path.basename(p) for p in paths] == [
    'alpha.png',
    'broken.jpg',
    'deep16.png',
    'odd.png',
    'small.bmp',
    'twin.jpg',
    'twin.png',
  ]  # notes.txt is not an image file.
  with caplog.at_level(logging.WARNING):
    written, skipped = translate.translate_files(
      restored, 'BtoA', paths, out, batch_size=8, progress=False
    )
  assert skipped == [os.path.join(inputs, 'broken.jpg')]
  assert 'broken.jpg' in caplog.text
  assert sorted(os.listdir(out)) == [
    'alpha.png',
    'deep16.png',
    'odd.png',
    'small.png',
    'twin_jpg.png',
    'twin_png.png',
  ]
  assert len(written) == 6
  for name in os.listdir(out):
    with Image.open(os.path.join(out, name)) as im:
      assert im.mode == 'RGB'
      assert im.size == ((18, 21) if name == 'small.png' else (53, 37))  # (W, H).


def test_output_is_the_generator_applied_to_the_image(restored, tmp_path):
  source = str(tmp_path / 'one.png')
  image = np.random.default_rng(1).integers(0, 256, (21, 18, 3), dtype=np.uint8)
  Image.fromarray(image).save(source)
  translate.translate_files(
    restored, 'AtoB', [source], str(tmp_path / 'out'), progress=False
  )
  got = np.asarray(Image.open(str(tmp_path / 'out' / 'one.png')))
  apply = jax.jit(restored.generator.apply)  # One compile, not one per op.
  want = inference.to_uint8(
    apply({'params': restored.params['G_A']}, inference.from_uint8(image)[None])[0]
  )
  assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """A workdir converted from an official-layout .pth holding only G_A (A→B)."""
  workdir = str(tmp_path_factory.mktemp('converted'))
  convert.convert(workdir, g_AtoB=os.path.join(DATA, 'G_resnet6_ngf6.pth'))
  return workdir


def test_converted_weights_translate_a_to_b(converted, tmp_path):
  restored = inference.restore(converted)
  assert set(restored.params) == {'G_A'} and restored.model_config.ngf == 6
  source = str(tmp_path / 'photo.jpg')
  Image.fromarray(np.full((37, 53, 3), 90, np.uint8)).save(source)
  written, _ = translate.translate_files(
    restored, 'AtoB', [source], str(tmp_path / 'o'), progress=False
  )
  assert [os.path.basename(p) for p in written] == ['photo.png']
  assert Image.open(written[0]).size == (53, 37)


def test_cli_b_to_a_without_g_b_says_what_to_do(converted, tmp_path):
  source = str(tmp_path / 'photo.png')
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(source)
  with pytest.raises(SystemExit, match=r'no G_B, the BtoA generator.*--g_BtoA'):
    translate.run(
      workdir=converted,
      input_path=source,
      output=str(tmp_path / 'o'),
      direction='BtoA',
      progress=False,
    )


def test_input_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='neither a file nor a folder'):
    translate.list_inputs(str(tmp_path / 'missing'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(FileNotFoundError, match='No images in'):
    translate.list_inputs(str(tmp_path / 'empty'))


def test_batches_group_one_size_and_pad_to_powers_of_two():
  items = [('a', 1), ('b', 2), ('c', 1), ('d', 1), ('e', 2)]
  groups = list(inference.batches_by_shape(items, lambda it: (it[1],), 2))
  assert groups == [[('a', 1), ('c', 1)], [('b', 2), ('e', 2)], [('d', 1)]]
  assert [inference.bucket_size(n, 8) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 8]
  batch = inference.padded_batch([np.zeros((2, 2)), np.ones((2, 2))], 4)
  assert batch.shape == (4, 2, 2) and batch[3].sum() == 4


def test_evaluating_converted_weights_scores_the_direction_they_hold(converted):
  config = tiny_run.tiny_config()
  config.eval.max_images = 2
  result = evaluate.evaluate(config, converted)  # Only G_A: A→B, no reconstructions.
  assert set(result) == {
    'AtoB/psnr',
    'AtoB/ssim',
    'AtoB/psnr_identity',
    'AtoB/ssim_identity',
    'AtoB/grid',
    'AtoB/grid_gt',
    'AtoB/checkerboard',
  }
  images = os.listdir(os.path.join(converted, 'eval', 'step_0', 'images', 'AtoB'))
  assert sorted(images) == sorted(
    f'colors_testA_000{i}_{kind}.png' for i in range(2) for kind in ('real', 'fake', 'gt')
  )
