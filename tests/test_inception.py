"""cyclegan_jax.evaluation.inception against pytorch-fid 0.3.0 (fixtures made with its own code).

tests/data/fid/make_fixtures.py ran pytorch-fid's network on random weights from the
seeded recipe of tests/fid_fixtures.py; here the same weights are written as a `.pth`
(without torch), read back through the project's restricted reader and compared.
"""

import os
import zipfile

import fid_fixtures
import jax
import numpy as np
from PIL import Image
import pytest

from cyclegan_jax.evaluation import inception
from cyclegan_jax.nets import torch_weights

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
FID_DATA = os.path.join(DATA, 'fid')


def torch_shapes() -> dict[str, tuple[int, ...]]:
  """pytorch-fid's state-dict keys and shapes, with its batch-norm counters."""
  shapes = {}
  for key, (_, shape) in inception._torch_layout(inception.variable_shapes()).items():  # pylint: disable=protected-access
    shapes[key] = shape
    if key.endswith('bn.running_var'):
      shapes[key.replace('running_var', 'num_batches_tracked')] = ()
  return shapes


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp('inception') / 'random_inception.pth')
  fid_fixtures.write_pth(path, fid_fixtures.random_state_dict(torch_shapes()))
  return path


@pytest.fixture(scope='module')
def variables(weights_file):
  return inception.load_weights(weights_file)


@pytest.fixture(scope='module')
def reference():
  with np.load(os.path.join(FID_DATA, 'features.npz')) as f:
    return {k: f[k] for k in f.files}


def fixture_images(reference) -> list[np.ndarray]:
  images = []
  for name in reference['names']:
    with Image.open(os.path.join(FID_DATA, 'images', str(name))) as im:
      images.append(np.asarray(im.convert('RGB')))
  return images


def test_fixture_images_cover_sizes_and_modes(reference):
  modes, sizes = set(), set()
  for name in reference['names']:
    with Image.open(os.path.join(FID_DATA, 'images', str(name))) as im:
      modes.add((im.format, im.mode))
      sizes.add(im.size)
  assert {
    ('PNG', 'RGB'),
    ('JPEG', 'RGB'),
    ('PNG', 'L'),
    ('PNG', 'RGBA'),
    ('PNG', 'P'),
  } <= modes
  assert (
    (299, 299) in sizes
    and any(w < 299 for w, _ in sizes)
    and any(w > 299 for w, _ in sizes)
  )


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_features_match_pytorch_fid_on_all_devices(variables, reference):
  net = inception.InceptionNet(variables, batch_size=4)  # 4 CPU devices, 1 image each.
  assert net.batch_size == 4 and len(jax.local_devices()) == 4
  extractor = inception.FeatureExtractor(net)
  for image in fixture_images(reference):  # 5 images: a full batch and a padded one.
    extractor.add(image)
  got = extractor.features()
  want = reference['features']
  assert got.shape == want.shape == (5, 2048)
  assert np.abs(want).max() > 10  # Non-trivial activations.
  np.testing.assert_array_less(np.abs(got - want).max(), 1e-4)


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_one_device_and_logits_match(variables, reference):
  images = fixture_images(reference)
  net = inception.InceptionNet(variables, batch_size=2, devices=jax.local_devices()[:1])
  extractor = inception.FeatureExtractor(net)
  for image in images[:2]:
    extractor.add(image.astype(np.float32) / 255)  # Float input in [0, 1] too.
  np.testing.assert_array_less(
    np.abs(extractor.features() - reference['features'][:2]).max(), 1e-4
  )
  x = np.stack([inception.resize_to_299(im) for im in images[:2]])
  feats, logits = jax.jit(lambda v, x: inception.InceptionV3().apply(v, x, logits=True))(
    variables, x
  )
  assert logits.shape == (2, inception.NUM_CLASSES)
  np.testing.assert_array_less(
    np.abs(np.asarray(logits) - reference['logits'][:2]).max(), 1e-4
  )
  feats_error = np.abs(np.asarray(feats) - reference['features'][:2]).max()
  np.testing.assert_array_less(feats_error, 1e-4)


def test_resize_is_torch_bilinear_without_antialias():
  # F.interpolate(..., mode='bilinear', align_corners=False) of torch 2.14 on these rows.
  def along_width(row, width):
    x = np.asarray(row, np.float32)[None, :, None]
    return inception.resize_bilinear(x, 1, width)[0, :, 0]

  np.testing.assert_allclose(along_width([0.0, 1.0], 4), [0, 0.25, 0.75, 1], atol=1e-7)
  np.testing.assert_allclose(
    along_width(np.arange(8), 3), [0.8333, 3.5, 6.1667], atol=1e-4
  )
  np.testing.assert_allclose(
    along_width(np.arange(5) ** 2, 7),
    [0.0, 0.5714286, 1.8571432, 4.0, 7.5714293, 12.0, 16.0],
    rtol=1e-6,
    atol=1e-6,
  )
  # Separable: the same along the height.
  column = inception.resize_bilinear(np.arange(8, dtype=np.float32)[:, None, None], 3, 1)
  np.testing.assert_allclose(column[:, 0, 0], [0.8333, 3.5, 6.1667], atol=1e-4)
  image = np.random.default_rng(0).integers(0, 256, (299, 299, 3), dtype=np.uint8)
  np.testing.assert_array_equal(inception.resize_to_299(image), image / np.float32(255))
  assert inception.resize_to_299(image[:40, :90]).shape == (299, 299, 3)


def test_state_dict_mapping(weights_file):
  sd = torch_weights.read_state_dict(weights_file)
  variables = inception.variables_from_state_dict(sd)
  kernel = variables['params']['Mixed_7c']['branch_pool']['conv']['kernel']
  np.testing.assert_array_equal(
    kernel, sd['Mixed_7c.branch_pool.conv.weight'].transpose(2, 3, 1, 0)
  )
  np.testing.assert_array_equal(
    variables['batch_stats']['Conv2d_1a_3x3']['bn']['var'],
    sd['Conv2d_1a_3x3.bn.running_var'],
  )
  np.testing.assert_array_equal(variables['params']['fc']['kernel'], sd['fc.weight'].T)
  shapes = jax.tree.map(lambda a: a.shape, variables)
  assert shapes == jax.tree.map(lambda a: a.shape, inception.variable_shapes())
  # Files without batch-norm counters (older torch) or with `module.` prefixes load too.
  plain = {f'module.{k}': v for k, v in sd.items() if 'num_batches' not in k}
  jax.tree.map(
    np.testing.assert_array_equal, inception.variables_from_state_dict(plain), variables
  )


def test_wrong_files_are_one_line_errors_naming_them(weights_file, tmp_path):
  generator = os.path.join(DATA, 'G_resnet6_ngf6.pth')
  with pytest.raises(
    torch_weights.WeightsFileError,
    match=r'G_resnet6_ngf6.pth: not a pytorch-fid Inception state dict: '
    r"key 'Conv2d_1a_3x3.bn.running_mean' is missing",
  ) as e:
    inception.load_weights(generator)
  assert '\n' not in str(e.value)

  truncated = tmp_path / 'truncated.pth'
  truncated.write_bytes(open(weights_file, 'rb').read()[: 1 << 20])
  with pytest.raises(torch_weights.WeightsFileError, match='truncated.pth: ') as e:
    inception.load_weights(truncated)
  assert '\n' not in str(e.value)

  sd = torch_weights.read_state_dict(weights_file)
  sd['fc.weight'] = sd['fc.weight'][:1000]  # torchvision's 1000 classes, not 1008.
  wrong = str(tmp_path / 'wrong.pth')
  fid_fixtures.write_pth(wrong, sd)
  with pytest.raises(
    torch_weights.WeightsFileError,
    match=r"wrong.pth: .*'fc.weight' has shape \(1000, 2048\), expected "
    r'\(1008, 2048\)',
  ):
    inception.load_weights(wrong)

  sd = torch_weights.read_state_dict(weights_file)
  sd['AuxLogits.fc.weight'] = np.zeros((1000, 768), np.float32)
  fid_fixtures.write_pth(wrong, sd)
  with pytest.raises(torch_weights.WeightsFileError, match="unexpected key 'AuxLogits"):
    inception.load_weights(wrong)


def test_pth_writer_is_the_zip_layout(weights_file):
  with zipfile.ZipFile(weights_file) as z:
    names = z.namelist()
  assert 'archive/data.pkl' in names and 'archive/data/0' in names


def test_weights_path_and_message(monkeypatch):
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  assert inception.weights_path(None) is None
  monkeypatch.setenv(inception.WEIGHTS_ENV, '/x/env.pth')
  assert inception.weights_path(None) == '/x/env.pth'
  assert inception.weights_path('/x/flag.pth') == '/x/flag.pth'
  message = inception.missing_weights_message('FID/KID')
  assert inception.WEIGHTS_URL in message and inception.WEIGHTS_ENV in message
  assert '\n' not in message
