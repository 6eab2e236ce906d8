"""Tests of cyclegan_jax.nets.torch_weights and cyclegan_jax.deploy.convert (no torch needed).

The fixtures in tests/data were written by tests/data/make_torch_fixtures.py, a PyTorch
re-statement of the official networks with random weights and biases.
"""

import io
import os
import pickle
import pickletools
import struct
import zipfile

from absl import flags
from absl.testing import flagsaver
import jax
import ml_collections
import numpy as np
import pytest

from cyclegan_jax.cli import app
from cyclegan_jax.deploy import convert
from cyclegan_jax.deploy import inference
from cyclegan_jax.nets import models
from cyclegan_jax.nets import torch_weights as tw
from cyclegan_jax.train import checkpoints
from tests import fid_fixtures

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


def data(name: str) -> str:
  return os.path.join(DATA, name)


def fixture(name: str) -> tuple[np.ndarray, np.ndarray]:
  with np.load(data(f'{name}.npz')) as f:
    return f['x'], f['y']


# --------------------------------------------------------------------------------------
# Numerical equivalence with PyTorch.
# --------------------------------------------------------------------------------------


# The plain layers and (slow to compile) the CPU's fast forms must both match PyTorch.
@pytest.mark.parametrize('fast', [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize(
  'name,ngf,num_blocks', [('G_resnet9_ngf8', 8, 9), ('G_resnet6_ngf6', 6, 6)]
)
def test_generator_matches_pytorch(name, ngf, num_blocks, fast):
  module, variables = tw.load_generator(data(f'{name}.pth'))
  assert (module.ngf, module.num_blocks, module.output_channels) == (ngf, num_blocks, 3)
  x, want = fixture(name)
  assert x.shape == (2, 32, 48, 3)  # Batch 2, non-square.
  got = np.asarray(jax.jit(module.clone(fast_layers=fast).apply)(variables, x))
  assert got.shape == want.shape
  np.testing.assert_array_less(np.abs(got - want).max(), 1e-4)


@pytest.mark.parametrize('fast', [False, pytest.param(True, marks=pytest.mark.slow)])
@pytest.mark.parametrize(
  'name,ndf,num_layers', [('D_basic_ndf8', 8, 3), ('D_n2_ndf8_module', 8, 2)]
)
def test_discriminator_matches_pytorch(name, ndf, num_layers, fast):
  module, variables = tw.load_discriminator(data(f'{name}.pth'))
  assert (module.ndf, module.num_layers) == (ndf, num_layers)
  x, want = fixture(name)
  got = np.asarray(jax.jit(module.clone(fast_layers=fast).apply)(variables, x))
  assert got.shape == want.shape
  np.testing.assert_array_less(np.abs(got - want).max(), 1e-4)


@pytest.mark.parametrize(
  'name,make',
  [
    ('G_resnet9_ngf8', lambda: models.ResnetGenerator(ngf=8, num_blocks=9)),
    ('G_resnet6_ngf6', lambda: models.ResnetGenerator(ngf=6, num_blocks=6)),
    ('D_basic_ndf8', lambda: models.PatchDiscriminator(ndf=8, num_layers=3)),
    ('D_n2_ndf8_module', lambda: models.PatchDiscriminator(ndf=8, num_layers=2)),
  ],
)
def test_converted_tree_is_the_models_tree(name, make):
  load = tw.load_generator if name.startswith('G') else tw.load_discriminator
  _, variables = load(data(f'{name}.pth'))
  want = jax.eval_shape(
    make().init, jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32)
  )
  shapes = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)
  assert shapes(variables) == shapes(want)


def test_spec_inference_and_module_prefix():
  g9, _ = tw.generator_from_state_dict(tw.read_state_dict(data('G_resnet9_ngf8.pth')))
  assert g9 == tw.GeneratorSpec(ngf=8, num_blocks=9, input_channels=3, output_channels=3)
  sd = tw.read_state_dict(data('G_resnet6_ngf6.pth'))
  g6, params = tw.generator_from_state_dict(sd)
  assert g6 == tw.GeneratorSpec(ngf=6, num_blocks=6, input_channels=3, output_channels=3)
  # The official indices: with 6 blocks the transposed convs are model.16 / model.19.
  np.testing.assert_array_equal(params['up_0']['conv']['bias'], sd['model.16.bias'])
  np.testing.assert_array_equal(params['head']['bias'], sd['model.23.bias'])
  # Conv2d OIHW -> HWIO.
  np.testing.assert_array_equal(
    params['stem']['kernel'], sd['model.1.weight'].transpose(2, 3, 1, 0)
  )
  # `module.` prefixes (nn.DataParallel) give the same parameters.
  prefixed, params_prefixed = tw.generator_from_state_dict(
    {f'module.{k}': v for k, v in sd.items()}
  )
  assert prefixed == g6
  jax.tree.map(np.testing.assert_array_equal, params, params_prefixed)

  d_sd = tw.read_state_dict(data('D_n2_ndf8_module.pth'))
  assert all(k.startswith('module.') for k in d_sd)
  spec, _ = tw.discriminator_from_state_dict(d_sd)
  assert spec == tw.DiscriminatorSpec(ndf=8, num_layers=2, input_channels=3)
  spec, _ = tw.discriminator_from_state_dict(tw.read_state_dict(data('D_basic_ndf8.pth')))
  assert spec == tw.DiscriminatorSpec(ndf=8, num_layers=3, input_channels=3)


def test_generator_channels_are_inferred():
  sd = tw.read_state_dict(data('G_resnet6_ngf6.pth'))
  sd['model.1.weight'] = sd['model.1.weight'][:, :1]  # Grayscale in,
  sd['model.23.weight'] = sd['model.23.weight'][:2]  # two channels out.
  sd['model.23.bias'] = sd['model.23.bias'][:2]
  spec, params = tw.generator_from_state_dict(sd)
  assert (spec.input_channels, spec.output_channels) == (1, 2)
  module = models.ResnetGenerator(ngf=6, num_blocks=6, output_channels=2)
  y = jax.eval_shape(
    module.apply, {'params': params}, np.zeros((1, 12, 8, 1), np.float32)
  )
  assert y.shape == (1, 12, 8, 2)


def test_old_instance_norm_buffers_are_dropped():
  # Files from old torch versions carry InstanceNorm running stats; the official code
  # deletes them when loading, and so do we.
  sd = tw.read_state_dict(data('D_basic_ndf8.pth'))
  with_buffers = dict(
    sd,
    **{
      'model.3.running_mean': np.zeros(16, np.float32),
      'model.3.running_var': np.ones(16, np.float32),
      'model.3.num_batches_tracked': np.zeros((), np.int64),
    },
  )
  _, a = tw.discriminator_from_state_dict(sd)
  _, b = tw.discriminator_from_state_dict(with_buffers)
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize(
  'edit,message',
  [
    (lambda sd: sd.pop('model.7.bias'), "'model.7.bias' is missing"),
    (
      lambda sd: sd.update({'model.12.conv_block.6.weight': np.zeros(3)}),
      "unexpected key 'model.12.conv_block.6.weight'",
    ),
    (
      lambda sd: sd.update({'model.4.weight': np.zeros((12, 6, 5, 5), np.float32)}),
      "'model.4.weight' has shape (12, 6, 5, 5), expected (12, 6, 3, 3)",
    ),
    (
      lambda sd: sd.update({'model.16.bias': np.zeros(5, np.float32)}),
      "'model.16.bias' has shape (5,), expected (12,)",
    ),
  ],
)
def test_wrong_generator_state_dict_names_the_key(edit, message):
  sd = tw.read_state_dict(data('G_resnet6_ngf6.pth'))
  edit(sd)
  with pytest.raises(tw.WeightsFileError, match='ResnetGenerator') as e:
    tw.generator_from_state_dict(sd)
  assert message in str(e.value)


def test_discriminator_is_not_a_generator():
  with pytest.raises(
    tw.WeightsFileError, match=r"D_basic_ndf8\.pth: .*'model.1.weight' is missing"
  ):
    tw.load_generator(data('D_basic_ndf8.pth'))
  with pytest.raises(tw.WeightsFileError, match='NLayerDiscriminator'):
    tw.load_discriminator(data('G_resnet9_ngf8.pth'))


# --------------------------------------------------------------------------------------
# The .pth reader itself.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize('name', ['tensors_zip.pth', 'tensors_legacy.pth'])
def test_reader_honours_offsets_strides_and_dtypes(name):
  sd = tw.read_state_dict(data(name))
  with np.load(data('tensors.npz')) as want:
    assert list(sd) == list(want.keys())
    for key, value in sd.items():
      assert value.shape == want[key].shape, key
      np.testing.assert_array_equal(value.astype(want[key].dtype), want[key], err_msg=key)
  assert sd['half'].dtype == np.float16
  assert sd['int64'].dtype == np.int64 and sd['int64'][1, 1] == 2**40
  assert str(sd['bfloat16'].dtype) == 'bfloat16'
  assert sd['transposed'].flags['C_CONTIGUOUS']


class _Evil:
  """Unpickling this runs `os.system(command)` (with an unrestricted unpickler)."""

  def __init__(self, command: str):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


class _EvalEvil:
  def __reduce__(self):
    return (eval, ("__import__('os').system('true')",))


def _zip_like_pth(path: str, pickle_bytes: bytes) -> None:
  """A file laid out as torch.save's zip format, with the given data.pkl."""
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
    z.writestr('archive/data.pkl', pickle_bytes)
    z.writestr('archive/byteorder', 'little')
    z.writestr('archive/version', '3\n')


@pytest.mark.parametrize('container', ['zip', 'raw'])
@pytest.mark.parametrize('protocol', [0, 2, 4])
def test_malicious_pickle_is_refused_and_does_not_run(tmp_path, container, protocol):
  marker = tmp_path / 'pwned'
  payload = pickle.dumps({'model.1.weight': _Evil(f'touch {marker}')}, protocol=protocol)
  assert b'system' in payload  # The pickle really names os.system (posix.system).
  path = str(tmp_path / 'evil.pth')
  if container == 'zip':
    _zip_like_pth(path, payload)
  else:
    with open(path, 'wb') as f:
      f.write(payload if protocol >= 2 else b'\x80\x02' + payload)
  with pytest.raises(tw.WeightsFileError, match=r'refused.*(posix|os|nt)\.system') as e:
    tw.load_generator(path)
  assert '\n' not in str(e.value)
  assert not marker.exists()
  # Control: an ordinary unpickler does run the payload, so the check above can fail.
  pickle.loads(payload)
  assert marker.exists()


def test_builtins_eval_is_refused(tmp_path):
  path = str(tmp_path / 'evil.pth')
  _zip_like_pth(path, pickle.dumps(_EvalEvil(), protocol=2))
  with pytest.raises(tw.WeightsFileError, match=r'(__builtin__|builtins)\.eval'):
    tw.read_state_dict(path)


def test_truncated_file_gives_one_line_error(tmp_path):
  with open(data('D_basic_ndf8.pth'), 'rb') as f:
    blob = f.read()
  for n in (len(blob) // 2, 100, 3):
    path = tmp_path / f'cut{n}.pth'
    path.write_bytes(blob[:n])
    with pytest.raises(tw.WeightsFileError) as e:
      tw.load_discriminator(str(path))
    assert '\n' not in str(e.value) and str(path) in str(e.value)
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_truncated_legacy_file_gives_one_line_error(tmp_path):
  with open(data('tensors_legacy.pth'), 'rb') as f:
    blob = f.read()
  for n in (len(blob) - 5, 400, 30):
    path = tmp_path / f'cut{n}.pth'
    path.write_bytes(blob[:n])
    with pytest.raises(tw.WeightsFileError, match='truncated|corrupt') as e:
      tw.read_state_dict(str(path))
    assert '\n' not in str(e.value)


def test_corrupt_storage_record_is_reported(tmp_path):
  path = str(tmp_path / 'short.pth')
  with zipfile.ZipFile(data('tensors_zip.pth')) as src, zipfile.ZipFile(path, 'w') as dst:
    for item in src.infolist():
      body = src.read(item)
      dst.writestr(item.filename, body[:2] if item.filename.endswith('/data/0') else body)
  with pytest.raises(tw.WeightsFileError, match='truncated'):
    tw.read_state_dict(path)


def _unicode(text: str) -> bytes:
  return b'X' + struct.pack('<I', len(text)) + text.encode()


def test_views_beyond_their_storage_are_refused(tmp_path):
  # Hand-assembled protocol-2 pickle: {'w': _rebuild_tensor_v2(<4-float storage>, 0,
  # (10**6, 10**6), (0, 0), False, None)}, a 10^12-element view of 4 floats.
  payload = b''.join(
    [
      b'\x80\x02}',
      _unicode('w'),
      b'ctorch._utils\n_rebuild_tensor_v2\n(',
      b'(',
      _unicode('storage'),
      b'ctorch\nFloatStorage\n',
      _unicode('0'),
      _unicode('cpu'),
      b'K\x04tQ',
      b'K\x00',
      b'(' + (b'J' + struct.pack('<i', 10**6)) * 2 + b't',
      b'(K\x00K\x00t',
      b'\x89N',
      b'tRs.',
    ]
  )
  assert pickletools.dis(payload, out=io.StringIO()) is None  # A well-formed pickle.
  path = str(tmp_path / 'huge.pth')
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', payload)
    z.writestr('archive/data/0', np.zeros(4, np.float32).tobytes())
  with pytest.raises(tw.WeightsFileError, match='past the end of storage'):
    tw.read_state_dict(path)


@pytest.mark.parametrize(
  'obj,kind', [([1, 2, 3], 'list'), ({'a': 1.0}, 'float'), ('hello', 'str')]
)
def test_non_state_dict_is_a_clear_error(tmp_path, obj, kind):
  path = str(tmp_path / 'other.pth')
  _zip_like_pth(path, pickle.dumps(obj, protocol=2))
  with pytest.raises(tw.WeightsFileError, match=f'not a state dict.*{kind}'):
    tw.read_state_dict(path)


def test_not_a_pth_file(tmp_path):
  path = tmp_path / 'image.pth'
  path.write_bytes(b'\xff\xd8\xff\xe0 a jpeg')
  with pytest.raises(tw.WeightsFileError, match='not a PyTorch'):
    tw.read_state_dict(str(path))
  with pytest.raises(tw.WeightsFileError, match='cannot read'):
    tw.read_state_dict(str(tmp_path / 'missing.pth'))


# --------------------------------------------------------------------------------------
# The convert CLI.
# --------------------------------------------------------------------------------------


@pytest.fixture(name='parsed_flags')
def fixture_parsed_flags():
  """convert's flags as `app.run` leaves them, so `convert.main` can read them."""
  if 'g_AtoB' not in flags.FLAGS:
    convert.define_flags()
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  return flags.FLAGS


@pytest.mark.slow
def test_convert_cli_round_trip(tmp_path, parsed_flags):
  workdir = str(tmp_path / 'converted')
  with flagsaver.flagsaver(
    g_AtoB=data('G_resnet6_ngf6.pth'),
    g_BtoA=data('G_resnet6_ngf6.pth'),
    d_A=data('D_n2_ndf8_module.pth'),
    workdir=workdir,
  ):
    outcome = convert.main(['convert'])
  assert outcome.data['networks'] == ['D_A', 'G_A', 'G_B']
  assert outcome.line.startswith("Wrote ['D_A', 'G_A', 'G_B'] (netG=resnet_6blocks")
  params, config, step = checkpoints.restore_params(workdir)
  assert step == 0 and sorted(params) == ['D_A', 'G_A', 'G_B']
  assert config['model']['netG'] == 'resnet_6blocks' and config['model']['ngf'] == 6
  assert config['model']['ndf'] == 8 and config['model']['n_layers_D'] == 2
  assert config['model']['netD'] == 'n_layers'
  _, g_vars = tw.load_generator(data('G_resnet6_ngf6.pth'))
  _, d_vars = tw.load_discriminator(data('D_n2_ndf8_module.pth'))
  for name, want in (('G_A', g_vars), ('G_B', g_vars), ('D_A', d_vars)):
    jax.tree.map(np.testing.assert_array_equal, params[name], want['params'])
  # The config rebuilds the networks that run the restored parameters.
  generator = models.generator_from_config(ml_collections.ConfigDict(config['model']))
  x, want = fixture('G_resnet6_ngf6')
  got = jax.jit(generator.apply)({'params': params['G_A']}, x)
  np.testing.assert_array_less(np.abs(got - want).max(), 1e-4)


def test_convert_single_zoo_generator(tmp_path):
  params, config = convert.convert(str(tmp_path), g_AtoB=data('G_resnet9_ngf8.pth'))
  assert sorted(params) == ['G_A']
  assert config['model']['netG'] == 'resnet_9blocks' and config['model']['ngf'] == 8
  restored, config_back, _ = checkpoints.restore_params(str(tmp_path))
  assert config_back == config
  jax.tree.map(np.testing.assert_array_equal, restored['G_A'], params['G_A'])


def test_convert_errors(tmp_path, parsed_flags):
  with pytest.raises(tw.WeightsFileError, match='differ in size'):
    convert.convert(
      str(tmp_path / 'a'),
      g_AtoB=data('G_resnet6_ngf6.pth'),
      g_BtoA=data('G_resnet9_ngf8.pth'),
    )
  with pytest.raises(tw.WeightsFileError, match='nothing to convert'):
    convert.convert(str(tmp_path / 'b'))
  convert.convert(str(tmp_path / 'c'), g_AtoB=data('G_resnet6_ngf6.pth'))
  with pytest.raises(tw.WeightsFileError, match='already holds checkpoints'):
    convert.convert(str(tmp_path / 'c'), g_AtoB=data('G_resnet6_ngf6.pth'))
  # The CLI turns the error into one line and exit status 1.
  with flagsaver.flagsaver(g_AtoB=data('D_basic_ndf8.pth'), workdir=str(tmp_path / 'd')):
    with pytest.raises(SystemExit, match='^convert: error: .*model.1.weight'):
      app.finish('convert', convert.main, ['convert'])


# --------------------------------------------------------------------------------------
# 1-channel domains (the official --input_nc 1 / --output_nc 1).
# --------------------------------------------------------------------------------------


def _np_conv(x, w, b, stride=1, pad=0):
  """torch's Conv2d on NCHW: zero padding, weights (out, in, kh, kw)."""
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  k = w.shape[-1]
  win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(2, 3))
  win = win[:, :, ::stride, ::stride]
  return np.einsum('nchwij,ocij->nohw', win, w, optimize=True) + b[None, :, None, None]


def _np_conv_transpose(x, w, b):
  """torch's ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1), w (in, out, k, k):
  dilate, pad k-1-p before and k-1-p+output_padding after, correlate with the flip."""
  n, c, h, wd = x.shape
  dilated = np.zeros((n, c, 2 * h - 1, 2 * wd - 1), x.dtype)
  dilated[:, :, ::2, ::2] = x
  dilated = np.pad(dilated, ((0, 0), (0, 0), (1, 2), (1, 2)))
  return _np_conv(dilated, w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1], b)


def _np_norm(x):
  mean = x.mean(axis=(2, 3), keepdims=True)
  return (x - mean) / np.sqrt(x.var(axis=(2, 3), keepdims=True) + 1e-5)


def _np_reflect(x, pad):
  return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode='reflect')


def official_generator_numpy(sd, x_nhwc):
  """The official ResnetGenerator's forward pass in float64 numpy, read straight from a
  state dict: a re-statement independent of the Flax port (checked against PyTorch's
  outputs below), so it can give reference outputs for layouts no torch run wrote."""
  w = lambda key: (sd[f'{key}.weight'].astype(np.float64), sd[f'{key}.bias'])
  relu = lambda v: np.maximum(v, 0)
  y = np.transpose(x_nhwc, (0, 3, 1, 2)).astype(np.float64)
  y = relu(_np_norm(_np_conv(_np_reflect(y, 3), *w('model.1'))))
  y = relu(_np_norm(_np_conv(y, *w('model.4'), stride=2, pad=1)))
  y = relu(_np_norm(_np_conv(y, *w('model.7'), stride=2, pad=1)))
  blocks = 0
  while f'model.{10 + blocks}.conv_block.1.weight' in sd:
    i = 10 + blocks
    z = relu(_np_norm(_np_conv(_np_reflect(y, 1), *w(f'model.{i}.conv_block.1'))))
    y = y + _np_norm(_np_conv(_np_reflect(z, 1), *w(f'model.{i}.conv_block.5')))
    blocks += 1
  y = relu(_np_norm(_np_conv_transpose(y, *w(f'model.{10 + blocks}'))))
  y = relu(_np_norm(_np_conv_transpose(y, *w(f'model.{13 + blocks}'))))
  y = np.tanh(_np_conv(_np_reflect(y, 3), *w(f'model.{17 + blocks}')))
  return np.transpose(y, (0, 2, 3, 1)).astype(np.float32)


def _gray_pth(tmp_path, *, input_nc, output_nc) -> str:
  """G_resnet6_ngf6 cut to the official layout of `--input_nc`/`--output_nc` 1."""
  sd = dict(tw.read_state_dict(data('G_resnet6_ngf6.pth')))
  sd['model.1.weight'] = sd['model.1.weight'][:, :input_nc]
  sd['model.23.weight'] = sd['model.23.weight'][:output_nc]
  sd['model.23.bias'] = sd['model.23.bias'][:output_nc]
  path = str(tmp_path / f'G_{input_nc}to{output_nc}.pth')
  fid_fixtures.write_pth(path, sd)
  return path


def test_numpy_reference_matches_pytorch():
  x, want = fixture('G_resnet6_ngf6')
  got = official_generator_numpy(tw.read_state_dict(data('G_resnet6_ngf6.pth')), x)
  np.testing.assert_array_less(np.abs(got - want).max(), 1e-4)


def test_one_channel_pth_imports_and_matches_reference(tmp_path):
  x3, want3 = fixture('G_resnet6_ngf6')
  # 3 -> 1: the head's first output channel alone; PyTorch's own output is the reference.
  module, variables = tw.load_generator(_gray_pth(tmp_path, input_nc=3, output_nc=1))
  assert module.output_channels == 1
  got = np.asarray(jax.jit(module.apply)(variables, x3))
  np.testing.assert_array_less(np.abs(got - want3[..., :1]).max(), 1e-4)
  # 1 -> 3: a grayscale input; the reference is the numpy re-statement.
  path = _gray_pth(tmp_path, input_nc=1, output_nc=3)
  x1 = x3[..., :1]
  module, variables = tw.load_generator(path)
  got = np.asarray(jax.jit(module.apply)(variables, x1))
  want = official_generator_numpy(tw.read_state_dict(path), x1)
  assert got.shape == (2, 32, 48, 3)
  np.testing.assert_array_less(np.abs(got - want).max(), 1e-4)


def test_convert_mixed_channels_sets_the_config(tmp_path):
  g_ab = _gray_pth(tmp_path, input_nc=1, output_nc=3)
  g_ba = _gray_pth(tmp_path, input_nc=3, output_nc=1)
  workdir = str(tmp_path / 'w')
  params, config = convert.convert(workdir, g_AtoB=g_ab, g_BtoA=g_ba)
  assert (config['model']['input_nc'], config['model']['output_nc']) == (1, 3)
  assert config['loss']['lambda_identity'] == 0.0  # Needs equal channels.
  restored = inference.restore(workdir)
  assert restored.input_channels('G_A') == 1 and restored.input_channels('G_B') == 3
  x = np.zeros((1, 16, 16, 1), np.float32)
  y = restored.generator_for('G_A').apply({'params': restored.params['G_A']}, x)
  assert y.shape == (1, 16, 16, 3)
  y = restored.generator_for('G_B').apply({'params': restored.params['G_B']}, y)
  assert y.shape == (1, 16, 16, 1)
  # A config asking for RGB domains is one line naming both values.
  rgb = ml_collections.ConfigDict({'netG': 'resnet_6blocks', 'ngf': 6, 'input_nc': 3})
  with pytest.raises(inference.ArchitectureMismatchError) as e:
    inference.restore(workdir, requested_model=rgb)
  assert 'trained with model.input_nc=1, this config has 3' in str(e.value)
  assert '\n' not in str(e.value)
  # Files that disagree on a domain's channels are refused.
  with pytest.raises(tw.WeightsFileError, match="disagree on domain A's channels"):
    convert.convert(str(tmp_path / 'x'), g_AtoB=g_ab, g_BtoA=g_ab)
