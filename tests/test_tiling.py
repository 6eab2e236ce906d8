"""Tiled translation equals untiled translation, at odd sizes, for any valid overlap."""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from configs import tiny
from cyclegan_jax.deploy import convert
from cyclegan_jax.deploy import inference
from cyclegan_jax.deploy import tiling
from cyclegan_jax.deploy import translate
from cyclegan_jax.nets import models
from cyclegan_jax.nets import spec
from cyclegan_jax.studies import recipes
from cyclegan_jax.train import checkpoints
from cyclegan_jax.train import loop as train
from cyclegan_jax.train import step as step_lib
from tests import test_improved
from tests import test_train

DATA = os.path.join(os.path.dirname(__file__), 'data')


def generator_and_params(num_blocks, channels_in=3, channels_out=3, ngf=4, **layout):
  """Plain-layer generator with parameters perturbed so every bias and norm matters.

  `layout`: its `upsample` / `downsample` / `head` (the paper's by default).
  """
  generator = models.ResnetGenerator(
    ngf=ngf,
    num_blocks=num_blocks,
    output_channels=channels_out,
    conv_impl='xla',
    **layout,
  )
  params = generator.init(jax.random.key(0), jnp.zeros((1, 16, 16, channels_in)))
  leaves, tree = jax.tree.flatten(params['params'])
  keys = jax.random.split(jax.random.key(1), len(leaves))
  leaves = [x + 0.05 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
  return generator, jax.tree.unflatten(tree, leaves)


def untiled(generator, params, image):
  return np.asarray(jax.jit(generator.apply)({'params': params}, image[None])[0])


def assert_same(tiled, want):
  assert tiled.shape == want.shape
  assert np.abs(tiled - want).max() <= 1e-4
  diff = inference.to_uint8(tiled).astype(int) - inference.to_uint8(want).astype(int)
  assert np.abs(diff).max() <= 1


def test_six_blocks_at_an_odd_size_for_several_overlaps():
  generator, params = generator_and_params(6)
  image = np.random.default_rng(0).uniform(-1, 1, (389, 517, 3)).astype(np.float32)
  want = untiled(generator, params, image)
  for overlap in (0, 8, 36):
    tiled = tiling.translate_tiled(generator, params, image, tile=128, overlap=overlap)
    assert_same(tiled, want)


def test_nine_blocks_one_channel_and_the_smallest_tile():
  generator, params = generator_and_params(9, channels_in=1, channels_out=1)
  image = np.random.default_rng(2).uniform(-1, 1, (101, 75, 1)).astype(np.float32)
  want = untiled(generator, params, image)
  for tile, overlap in ((32, 0), (32, 12), (8, 0)):
    assert_same(
      tiling.translate_tiled(generator, params, image, tile=tile, overlap=overlap), want
    )


@pytest.mark.parametrize('downsample', spec.DOWNSAMPLE_MODES)
@pytest.mark.parametrize('upsample', spec.UPSAMPLE_MODES)
def test_every_layout_tiles_exactly(upsample, downsample):
  generator, params = generator_and_params(6, upsample=upsample, downsample=downsample)
  image = np.random.default_rng(4).uniform(-1, 1, (61, 45, 3)).astype(np.float32)
  # Steps of 16 over 64×48 (padded): the last tiles are shifted, at every resolution.
  tiled = tiling.translate_tiled(generator, params, image, tile=24, overlap=8)
  assert_same(tiled, untiled(generator, params, image))


def test_one_channel_with_resize_conv_and_blur_at_the_smallest_tile():
  generator, params = generator_and_params(
    6, channels_in=1, channels_out=1, upsample='resize_conv', downsample='blur'
  )
  image = np.random.default_rng(5).uniform(-1, 1, (45, 61, 1)).astype(np.float32)
  plan = tiling.plan_for(generator, params)
  assert (tiling.min_tile(plan), tiling.tile_multiple(plan)) == (8, 4)
  assert_same(
    tiling.translate_tiled(generator, params, image, tile=8),
    untiled(generator, params, image),
  )


@pytest.mark.parametrize('head', ['curve', 'colour_skip'])
@pytest.mark.parametrize('channels_in', [3, 1])
def test_heads_with_a_colour_map_tile_exactly(channels_in, head):
  # generator_and_params perturbs every leaf: the zero-initialised head and curve
  # kernels get random values, as training would give them.
  generator, params = generator_and_params(6, channels_in=channels_in, head=head)
  image = np.random.default_rng(6).uniform(-1, 1, (61, 45, channels_in))
  image = image.astype(np.float32)
  want = untiled(generator, params, image)
  if head == 'curve':
    base = np.asarray(models.residual_base(image, 3))
    assert np.abs(want - base).max() > 0.1  # The head conv shows in the output.
  flat = dict(params, curve=jax.tree.map(jnp.zeros_like, params['curve']))
  assert np.abs(want - untiled(generator, flat, image)).max() > 0.01  # The map shows.
  tiled = tiling.translate_tiled(generator, params, image, tile=24, overlap=8)
  assert tiled.shape == want.shape == (61, 45, 3)
  assert np.abs(tiled - want).max() <= 1e-5


def test_spans_cover_every_pixel_once_with_one_tile_length():
  for size, tile, step in ((97, 32, 32), (97, 32, 20), (32, 32, 28), (20, 32, 32)):
    covered = np.zeros(size, int)
    for start, new in tiling.spans(size, tile, step):
      assert start + min(tile, size) <= size
      covered[start + new : start + min(tile, size)] += 1
    assert (covered == 1).all(), (size, tile, step)


@pytest.mark.parametrize(
  'tile, overlap, message',
  [
    (4, 0, r'--tile=4 is smaller .* nearest valid value: --tile=8\.'),
    (130, 0, r'--tile=130 is not a multiple of 4 .* nearest valid value: --tile=128\.'),
    (128, 6, r'--overlap=6 must be .* nearest valid value: --overlap=8\.'),
    (128, 200, r'--overlap=200 must be .* nearest valid value: --overlap=124\.'),
  ],
)
def test_bad_tile_or_overlap_names_the_nearest_valid_value(tile, overlap, message):
  generator, params = generator_and_params(6)
  with pytest.raises(ValueError, match=message):
    tiling.check_tile(tile, overlap, tiling.plan_for(generator, params))


def test_unknown_layouts_are_refused_in_one_line():
  generator, params = generator_and_params(6)
  renamed = dict(params, up_0_resize=params['up_0'])
  del renamed['up_0']
  with pytest.raises(tiling.UnsupportedLayoutError, match=r'up_0_resize.*--tile=0'):
    tiling.plan_for(generator, renamed)
  # An unknown mode is no generator at all: refused as the model refuses it.
  with pytest.raises(ValueError, match="model.upsample must be one of .*'pixel_shuffle'"):
    tiling.plan_for(generator.clone(upsample='pixel_shuffle'), params)
  with pytest.raises(tiling.UnsupportedLayoutError, match='PatchDiscriminator'):
    tiling.plan_for(models.PatchDiscriminator(), params)
  wrong_kernel = dict(
    params, up_1={'conv': {'kernel': np.zeros((4, 4, 4, 8)), 'bias': 0}}
  )
  with pytest.raises(tiling.UnsupportedLayoutError, match='up_1/conv has a 4×4 kernel'):
    tiling.plan_for(generator, wrong_kernel)


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """A workdir converted from an official-layout .pth (resnet_6blocks, ngf 6)."""
  workdir = str(tmp_path_factory.mktemp('converted'))
  convert.convert(workdir, g_AtoB=os.path.join(DATA, 'G_resnet6_ngf6.pth'))
  return workdir


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
  folder = tmp_path_factory.mktemp('in')
  rng = np.random.default_rng(3)
  for name, (h, w) in {
    'wide.png': (37, 83),
    'tall.png': (61, 29),
    'wide_2.png': (37, 83),
  }.items():
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / name)
  return str(folder)


def read_all(folder):
  return {
    n: np.asarray(Image.open(os.path.join(folder, n))).astype(int)
    for n in os.listdir(folder)
  }


@pytest.fixture(scope='module')
def untiled_outputs(converted, inputs, tmp_path_factory):
  out = str(tmp_path_factory.mktemp('untiled'))
  assert (
    len(translate.run(workdir=converted, input_path=inputs, output=out, progress=False))
    == 3
  )
  return read_all(out)


def test_cli_tiled_writes_what_untiled_writes(
  converted, inputs, untiled_outputs, tmp_path
):
  tiled = str(tmp_path / 'tiled')
  translate.run(
    workdir=converted, input_path=inputs, output=tiled, progress=False, tile=16, overlap=4
  )
  got = read_all(tiled)
  assert sorted(got) == ['tall.png', 'wide.png', 'wide_2.png']
  for name, want in untiled_outputs.items():
    assert np.abs(got[name] - want).max() <= 1, name


def test_cli_bad_tile_exits_with_the_nearest_valid_value(converted, inputs, tmp_path):
  with pytest.raises(SystemExit, match=r'translate: error: --tile=18 .*--tile=16\.'):
    translate.run(
      workdir=converted, input_path=inputs, output=str(tmp_path / 'o'), tile=18
    )


def test_images_that_would_not_fit_are_tiled_with_one_log_line(
  converted, inputs, untiled_outputs, tmp_path, monkeypatch, caplog
):
  monkeypatch.setattr(tiling, 'available_bytes', lambda device=None: 10**6)
  auto = str(tmp_path / 'auto')
  with caplog.at_level(logging.INFO, logger='absl'):
    translate.run(workdir=converted, input_path=inputs, output=auto, progress=False)
  lines = [r.getMessage() for r in caplog.records if 'is tiled at' in r.getMessage()]
  assert len(lines) == 3 and 'tall.png (29×61) is tiled at 512 px' in lines[0]
  assert 'wide_2.png (83×37)' in lines[2]
  got = read_all(auto)  # A tile larger than the image: one tile, the same output.
  for name, want in untiled_outputs.items():
    assert np.abs(got[name] - want).max() <= 1, name


def assert_cli_tiles_like_untiled(workdir, inputs, tmp_path):
  """`translate` of `inputs` from `workdir` with --tile=16 writes the untiled PNGs
  (within one 8-bit level)."""
  outputs = {}
  for tile in (0, 16):
    out = str(tmp_path / f'tile_{tile}')
    translate.run(
      workdir=workdir, input_path=inputs, output=out, progress=False, tile=tile
    )
    outputs[tile] = read_all(out)
  assert sorted(outputs[16]) == ['tall.png', 'wide.png', 'wide_2.png']
  for name, want in outputs[0].items():
    assert np.abs(outputs[16][name] - want).max() <= 1, name


@pytest.fixture(scope='module')
def colour_transfer_workdir(tmp_path_factory):
  """A step-0 checkpoint of the tiny colour transfer recipe with resize-conv upsampling and a
  weight average on (whatever else the recipe turns on)."""
  config = recipes.apply(
    test_improved.tiny_colour_transfer(),
    {'model.upsample': 'resize_conv', 'ema.decay': 0.99, 'ema.start_step': 0},
  )
  state = step_lib.create_train_state(
    step_lib.create_networks(config, 10),
    seed=0,
    mesh=test_train.mesh_of(1),
    image_shape=(16, 16, 3),
    pool_size=0,
  )
  # Perturbed, so every bias and norm matters and the average differs from the weights.
  state = state.replace(ema=jax.tree.map(lambda x: x + 0.05, state.ema))
  workdir = str(tmp_path_factory.mktemp('colour_transfer'))
  manager = checkpoints.create_manager(workdir)
  train.save_checkpoint(manager, state, config)
  manager.wait_until_finished()
  manager.close()
  return workdir


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_cli_tiles_the_colour_transfer_recipe_with_its_average(
  colour_transfer_workdir, inputs, tmp_path
):
  restored = inference.restore(colour_transfer_workdir)
  assert (restored.weights, restored.generator.upsample) == ('ema', 'resize_conv')
  assert_cli_tiles_like_untiled(colour_transfer_workdir, inputs, tmp_path)


@pytest.mark.slow
def test_cli_tiles_a_checkpoint_trained_with_the_curve_head(inputs, tmp_path):
  config = tiny.get_config()
  config.model.head = 'curve'
  workdir = str(tmp_path / 'curve')
  train.train_and_evaluate(config, workdir)  # 2 steps.
  restored = inference.restore(workdir)
  assert restored.generator.head == 'curve' and 'curve' in restored.params['G_A']
  assert_cli_tiles_like_untiled(workdir, inputs, tmp_path)
