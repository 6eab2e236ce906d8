"""Tests of cyclegan_jax.deploy.export: every artifact, reloaded in its own runtime, is the
plain float32 JAX generator; the bad requests fail with one-line messages.

The ONNX and TFLite runtimes come from requirements-export.txt.
"""

import functools
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

from cyclegan_jax.data import image_files
from cyclegan_jax.deploy import convert
from cyclegan_jax.deploy import export
from cyclegan_jax.deploy import inference
from cyclegan_jax.deploy import translate
from cyclegan_jax.nets import models
from cyclegan_jax.train import checkpoints
from tests import tiny_run

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = 1e-4
# (source, direction, the tflite artifact's --size or None for the crop_size default).
MODELS = {
  'trained_6blocks': ('trained', 'BtoA', None),
  'converted_6blocks': ('G_resnet6_ngf6.pth', 'AtoB', (70, 85)),
  'converted_9blocks': ('G_resnet9_ngf8.pth', 'AtoB', (64, 64)),
}


class _Workdirs(dict):
  """Model name -> workdir, made on first use (the trained one takes a while)."""

  def __init__(self, folder):
    super().__init__()
    self._folder = folder

  def __missing__(self, name):
    source = MODELS[name][0]
    if source == 'trained':
      workdir = tiny_run.trained_workdir()
    else:
      workdir = str(self._folder / name)
      convert.convert(workdir, g_AtoB=os.path.join(DATA, source))
    self[name] = workdir
    return workdir


@pytest.fixture(scope='module')
def workdirs(tmp_path_factory):
  """Model name -> workdir: the shared tiny trained run (4 devices, 16 px crops) and
  workdirs converted from official-layout .pth files (A→B only)."""
  return _Workdirs(tmp_path_factory.mktemp('workdirs'))


@pytest.fixture(scope='module')
def exported(workdirs, tmp_path_factory):
  """(model, format) -> (artifact path, its JSON), each exported once per module."""
  folder = tmp_path_factory.mktemp('exported')

  @functools.cache
  def get(model: str, fmt: str):
    _, direction, size = MODELS[model]
    path = str(folder / f'{model}.{fmt}')
    export.export(
      export.Request(
        workdirs[model], direction, fmt, path, size=size if fmt == 'tflite' else None
      )
    )
    with open(export.metadata_path(path)) as f:
      return path, json.load(f)

  return get


# The runtime each format needs beyond JAX: a test skips when it is not installed.
RUNTIMES = {'tflite': 'ai_edge_litert.interpreter', 'onnx': 'onnxruntime'}


@functools.cache
def runtime(fmt: str, path: str):
  """The artifact loaded in its own runtime, as a function of a float32 batch."""
  if fmt in RUNTIMES:
    pytest.importorskip(RUNTIMES[fmt])
  return export.load_artifact(fmt, path)


@functools.cache
def jax_generator(workdir: str, direction: str):
  """The checkpoint's generator, plain float32, jitted: the reference of every format."""
  name = inference.DIRECTIONS[direction][0]
  restored = inference.restore(workdir, generators=(name,))
  module = restored.generator.clone(fast_layers=False)
  assert np.dtype(module.dtype) == np.float32
  return restored, jax.jit(lambda x: module.apply({'params': restored.params[name]}, x))


def images(shape, seed=0):
  return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def input_shapes(fmt, metadata):
  if fmt == 'tflite':  # One fixed size, batch 1.
    return [tuple(metadata['io']['shape'])]
  return [(1, 64, 64, 3), (2, 72, 88, 3)]


# The fast tier keeps the converted models in the two formats that convert in seconds;
# the trained model (a training run) and the TensorFlow conversions are slow.
_SLOW_FORMATS = ('saved_model', 'tflite')
FORMAT_PARAMS = [
  pytest.param(f, marks=pytest.mark.slow) if f in _SLOW_FORMATS else f
  for f in export.FORMATS
]
MODEL_PARAMS = [
  pytest.param(m, marks=pytest.mark.slow) if MODELS[m][0] == 'trained' else m
  for m in MODELS
]


@pytest.mark.parametrize('fmt', FORMAT_PARAMS)
@pytest.mark.parametrize('model', MODEL_PARAMS)
def test_artifact_computes_the_jax_generator(model, fmt, exported, workdirs):
  if fmt == 'onnx':
    pytest.importorskip('onnx')
  path, metadata = exported(model, fmt)
  direction = MODELS[model][1]
  restored, reference = jax_generator(workdirs[model], direction)
  run = runtime(fmt, path)
  for i, shape in enumerate(input_shapes(fmt, metadata)):
    x = images(shape, seed=i)
    got = run(x)
    assert got.shape == shape and got.dtype == np.float32
    np.testing.assert_array_less(np.abs(got - np.asarray(reference(x))).max(), TOLERANCE)

  assert metadata['format'] == fmt and metadata['direction'] == direction
  assert metadata['generator'] == inference.DIRECTIONS[direction][0]
  assert metadata['step'] == restored.step
  assert metadata['model']['netG'] == restored.model_config.netG
  assert metadata['model']['ngf'] == restored.model_config.ngf
  assert metadata['model']['num_blocks'] == (9 if '9blocks' in model else 6)
  assert metadata['io']['input_name'] == export.INPUT_NAME
  assert metadata['io']['range'] == [-1.0, 1.0]
  assert metadata['format_version']


@pytest.mark.slow
def test_tflite_size_defaults_to_the_training_crop(exported):
  _, metadata = exported('trained_6blocks', 'tflite')
  assert metadata['io']['shape'] == [1, 16, 16, 3]  # tiny_run's crop_size.


@pytest.mark.parametrize(
  'fmt', ['stablehlo', pytest.param('saved_model', marks=pytest.mark.slow), 'onnx']
)
def test_dynamic_formats_take_odd_and_smallest_sizes(fmt, exported, workdirs):
  if fmt == 'onnx':
    pytest.importorskip('onnx')
  path, _ = exported('converted_6blocks', fmt)
  _, reference = jax_generator(workdirs['converted_6blocks'], 'AtoB')
  for shape in [(1, 33, 47, 3), (3, export.MIN_SIZE, export.MIN_SIZE + 2, 3)]:
    x = images(shape)
    np.testing.assert_array_less(
      np.abs(runtime(fmt, path)(x) - np.asarray(reference(x))).max(), TOLERANCE
    )


def test_onnx_carries_the_metadata(exported):
  ort = pytest.importorskip('onnxruntime')
  path, metadata = exported('converted_9blocks', 'onnx')
  session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
  stored = json.loads(session.get_modelmeta().custom_metadata_map['cyclegan_jax'])
  assert stored['step'] == metadata['step'] and stored['io'] == metadata['io']
  assert [i.name for i in session.get_inputs()] == [export.INPUT_NAME]
  assert session.get_inputs()[0].shape == ['batch', 'height', 'width', 3]


@pytest.mark.slow
@pytest.mark.parametrize('fmt', export.FORMATS)
def test_artifact_reproduces_translate_images(fmt, exported, workdirs, tmp_path):
  """The uint8 images `translate` writes (with its default fast forms), within 1/255."""
  if fmt == 'onnx':
    pytest.importorskip('onnx')
  path, metadata = exported('trained_6blocks', fmt)
  sizes = [(16, 16)] if fmt == 'tflite' else [(16, 16), (21, 30)]
  sources = []
  for i, (h, w) in enumerate(sizes):
    sources.append(str(tmp_path / f'in_{i}.png'))
    pixels = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(sources[-1])
  restored = inference.restore(workdirs['trained_6blocks'])
  written, _ = translate.translate_files(
    restored, 'BtoA', sources, str(tmp_path / 'out'), progress=False
  )
  run = runtime(fmt, path)
  for source, target in zip(sources, written):
    x = inference.from_uint8(image_files.read_rgb(source))[None]
    got = inference.to_uint8(run(x)[0])
    want = np.asarray(Image.open(target))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.fixture(scope='module')
def bfloat16_9blocks(tmp_path_factory):
  """An Orbax checkpoint (step 3) of a 9-block generator pair whose config says
  bfloat16, written as training writes its parameters and config."""
  config = tiny_run.tiny_config()
  config.model.netG, config.model.ngf = 'resnet_9blocks', 4
  config.model.dtype = 'bfloat16'
  generator = models.generator_from_config(config.model)
  params = {
    name: generator.init(jax.random.key(seed), np.zeros((1, 16, 16, 3)))['params']
    for seed, name in enumerate(('G_A', 'G_B'))
  }
  workdir = str(tmp_path_factory.mktemp('bfloat16_9blocks'))
  manager = checkpoints.create_manager(workdir)
  checkpoints.save(manager, 3, params=params, config=config.to_dict())
  manager.wait_until_finished()
  manager.close()
  return workdir, generator, params


@pytest.mark.parametrize('fmt', ['stablehlo', 'onnx'])
def test_bfloat16_model_exports_the_float32_network(fmt, bfloat16_9blocks, tmp_path):
  if fmt == 'onnx':
    pytest.importorskip('onnx')
  workdir, generator, params = bfloat16_9blocks
  path = str(tmp_path / f'g.{fmt}')
  metadata = export.export(export.Request(workdir, 'BtoA', fmt, path))
  assert metadata['step'] == 3 and metadata['model']['dtype'] == 'bfloat16'
  assert metadata['model']['num_blocks'] == 9 and 'float32' in metadata['computes']
  module = generator.clone(dtype=np.float32, fast_layers=False)
  x = images((2, 72, 88, 3))
  want = np.asarray(jax.jit(module.apply)({'params': params['G_B']}, x))
  np.testing.assert_array_less(np.abs(runtime(fmt, path)(x) - want).max(), TOLERANCE)


# --- Bad requests -----------------------------------------------------------------------


def one_line_exit(request):
  with pytest.raises(SystemExit) as e:
    export.run(request)
  message = str(e.value.code)
  assert message.startswith('export: error: ') and '\n' not in message
  return message


def test_workdir_without_checkpoint(tmp_path):
  message = one_line_exit(
    export.Request(str(tmp_path), 'AtoB', 'onnx', str(tmp_path / 'g.onnx'))
  )
  assert 'No checkpoint' in message
  assert not os.path.exists(tmp_path / 'g.onnx')


def test_step_that_does_not_exist(workdirs, tmp_path):
  message = one_line_exit(
    export.Request(
      workdirs['converted_6blocks'], 'AtoB', 'onnx', str(tmp_path / 'g.onnx'), step=7
    )
  )
  assert 'No checkpoint for step 7' in message and 'available steps: [0]' in message


def test_unknown_format_lists_the_valid_ones(workdirs, tmp_path):
  message = one_line_exit(
    export.Request(workdirs['converted_6blocks'], 'AtoB', 'coreml', str(tmp_path / 'g'))
  )
  assert "'coreml'" in message
  assert all(f in message for f in export.FORMATS)


def test_direction_the_checkpoint_lacks(workdirs, tmp_path):
  message = one_line_exit(
    export.Request(
      workdirs['converted_9blocks'], 'BtoA', 'onnx', str(tmp_path / 'g.onnx')
    )
  )
  assert 'has no G_B' in message and "holds ['G_A']" in message
  assert 'export the other direction' in message
  assert os.listdir(tmp_path) == []  # Nothing staged is left behind.


def test_size_is_checked_and_for_tflite_only(workdirs, tmp_path):
  for text in ('4,64', 'a,b', '1,2,3'):
    with pytest.raises(export.ExportError, match='--size'):
      export.parse_size(text)
  assert export.parse_size('64') == (64, 64) and export.parse_size('70,85') == (70, 85)
  message = one_line_exit(
    export.Request(
      workdirs['converted_6blocks'],
      'AtoB',
      'onnx',
      str(tmp_path / 'g.onnx'),
      size=(64, 64),
    )
  )
  assert '--format=tflite only' in message


@pytest.mark.parametrize(
  'fmt', ['onnx', pytest.param('saved_model', marks=pytest.mark.slow)]
)
def test_existing_output_needs_overwrite(fmt, workdirs, tmp_path):
  if fmt == 'onnx':
    pytest.importorskip('onnx')
  workdir = workdirs['converted_6blocks']
  output = str(tmp_path / f'g.{fmt}')
  export.export(export.Request(workdir, 'AtoB', fmt, output))
  before = export.artifact_size(output)
  message = one_line_exit(export.Request(workdir, 'AtoB', fmt, output))
  assert 'exists' in message and '--overwrite' in message
  assert export.artifact_size(output) == before

  export.export(export.Request(workdir, 'AtoB', fmt, output, overwrite=True))
  assert sorted(os.listdir(tmp_path)) == sorted([f'g.{fmt}', f'g.{fmt}.json'])
  assert export.artifact_size(output) > 0


def test_overwrite_never_replaces_a_folder_that_is_not_a_saved_model(workdirs, tmp_path):
  folder = tmp_path / 'photos'
  folder.mkdir()
  (folder / 'keep.jpg').write_bytes(b'x')
  message = one_line_exit(
    export.Request(
      workdirs['converted_6blocks'], 'AtoB', 'saved_model', str(folder), overwrite=True
    )
  )
  assert 'not a SavedModel' in message
  assert os.listdir(folder) == ['keep.jpg']


# --- The command line and the example ---------------------------------------------------


def run_python(args, **kwargs):
  env = {**os.environ, 'PYTHONPATH': ROOT}
  return subprocess.run(
    [sys.executable, *args],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    **kwargs,
  )


@pytest.mark.slow
def test_cli_exports_and_reports_errors_in_one_line(workdirs, tmp_path):
  pytest.importorskip('onnx')
  output = str(tmp_path / 'g.onnx')
  base = [
    '-m',
    'cyclegan_jax.deploy.export',
    f'--workdir={workdirs["converted_9blocks"]}',
  ]
  done = run_python(base + ['--format=onnx', f'--output={output}'])
  assert done.returncode == 0, done.stderr
  assert os.path.isfile(output) and os.path.isfile(output + '.json')
  assert 'Wrote' in done.stdout

  # An error exits 1, a bad flag value 2 (a usage error), each in one line.
  for extra, expected, code in [
    (['--format=onnx', f'--output={output}'], 'exists', 1),
    (['--format=tf', f'--output={output}x'], 'stablehlo', 2),
    (['--format=tflite', '--size=3,3', f'--output={output}y'], '--size', 2),
  ]:
    failed = run_python(base + extra)
    assert failed.returncode == code, failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith('export: error: ') and expected in last, failed.stderr


@pytest.mark.slow
def test_example_runs_onnx_without_jax_and_matches_translate(
  exported, workdirs, tmp_path
):
  pytest.importorskip('onnxruntime')
  model, _ = exported('trained_6blocks', 'onnx')
  source, result = str(tmp_path / 'photo.jpg'), str(tmp_path / 'translated.png')
  pixels = np.random.default_rng(3).integers(0, 256, (23, 31, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(source, quality=95)
  # JAX, Flax and TensorFlow cannot be imported in the example's process.
  blocked = (
    'import sys, runpy; '
    'sys.modules.update(jax=None, flax=None, tensorflow=None); '
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
  )
  done = run_python(
    [
      '-c',
      blocked,
      'examples/run_onnx.py',
      f'--model={model}',
      f'--input={source}',
      f'--output={result}',
    ]
  )
  assert done.returncode == 0, done.stderr

  restored = inference.restore(workdirs['trained_6blocks'])
  written, _ = translate.translate_files(
    restored, 'BtoA', [source], str(tmp_path / 'jax'), progress=False
  )
  got, want = np.asarray(Image.open(result)), np.asarray(Image.open(written[0]))
  assert got.shape == want.shape == (23, 31, 3)
  assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


def docs_snippets():
  """The '# runtime' python blocks of docs/export.md, by their first line."""
  with open(os.path.join(ROOT, 'docs', 'export.md')) as f:
    blocks = f.read().split('```python\n')[1:]
  return {b.split('\n', 1)[0]: b.split('```', 1)[0] for b in blocks}


SNIPPETS = {
  '# onnxruntime': ('onnx', ('jax', 'flax', 'tensorflow', 'cyclegan_jax')),
  '# TensorFlow (SavedModel)': ('saved_model', ('jax', 'flax', 'cyclegan_jax')),
  '# TFLite': ('tflite', ('jax', 'flax', 'tensorflow', 'cyclegan_jax')),
  '# StableHLO': ('stablehlo', ('flax', 'cyclegan_jax')),
}


def test_docs_have_the_tested_snippets():
  found = {
    key for key in docs_snippets() for prefix in SNIPPETS if key.startswith(prefix)
  }
  assert len(found) == len(SNIPPETS)


@pytest.mark.slow
@pytest.mark.parametrize('prefix', list(SNIPPETS))
def test_docs_snippet_runs_without_jax(prefix, exported, workdirs, tmp_path):
  fmt, blocked = SNIPPETS[prefix]
  if fmt in ('onnx', 'tflite'):
    pytest.importorskip('onnxruntime' if fmt == 'onnx' else 'ai_edge_litert')
  (code,) = [c for key, c in docs_snippets().items() if key.startswith(prefix)]
  path, _ = exported('trained_6blocks', fmt)
  target = tmp_path / f'generator.{fmt}'
  (shutil.copytree if os.path.isdir(path) else shutil.copy)(path, target)
  pixels = np.random.default_rng(5).integers(0, 256, (16, 16, 3), dtype=np.uint8)
  Image.fromarray(pixels).save(tmp_path / 'photo.jpg', quality=95)
  block = f'import sys; sys.modules.update({{m: None for m in {blocked!r}}})\n'
  done = subprocess.run(
    [sys.executable, '-c', block + code],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert done.returncode == 0, done.stderr[-3000:]

  restored = inference.restore(workdirs['trained_6blocks'])
  written, _ = translate.translate_files(
    restored, 'BtoA', [str(tmp_path / 'photo.jpg')], str(tmp_path / 'jax'), progress=False
  )
  got = np.asarray(Image.open(tmp_path / 'translated.png'))
  want = np.asarray(Image.open(written[0]))
  assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.mark.slow
def test_benchmark_reports_every_format():
  pytest.importorskip('onnxruntime')
  pytest.importorskip('ai_edge_litert')
  done = run_python(
    [
      'benchmarks/export.py',
      '--size=24',
      '--netG=resnet_6blocks',
      '--ngf=4',
      '--repeats=2',
      '--warmup=1',
    ]
  )
  assert done.returncode == 0, done.stderr[-3000:]
  row = json.loads(done.stdout.strip().splitlines()[-1])
  rows = {r['format']: r for r in row['rows'] if r['format'] != 'jax'}
  assert sorted(rows) == sorted(export.FORMATS)
  for r in rows.values():
    assert r['size_mb'] > 0 and r['latency_s'] > 0 and r['max_abs_diff'] < TOLERANCE
