"""Export of generators in the optional layouts (config.model.upsample / downsample /
head) and of the weight average: each artifact, reloaded in its runtime, is the JAX
network.

Runs on checkpoints of random generator weights (no training); ONNX needs
requirements-export.txt's runtime, the TensorFlow formats are in the slow tier.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from cyclegan_jax.deploy import export
from cyclegan_jax.deploy import inference
from cyclegan_jax.nets import models
from cyclegan_jax.nets import spec
from cyclegan_jax.train import checkpoints
from tests import test_export


def _layouts() -> dict[str, dict[str, str]]:
  """One layout (`spec.generator_layout`) per mode other than the paper's, the paper's
  for the other fields (test_export exports the paper's layout)."""
  paper = {field: modes[0] for field, modes in spec.LAYOUT_MODES.items()}
  return {
    f'{field}_{mode}': {**paper, field: mode}
    for field, modes in spec.LAYOUT_MODES.items()
    for mode in modes[1:]
  }


# Each workdir's layout; every one keeps a weight average.
LAYOUTS = _layouts()
TOLERANCE = 1e-4


def _random_like(tree, seed):
  """Larger-than-init weights (N(0, 0.2)), so that every layer shows in the output."""
  leaves, treedef = jax.tree.flatten(tree)
  rng = np.random.default_rng(seed)
  return treedef.unflatten(
    [rng.normal(0, 0.2, np.shape(x)).astype(np.float32) for x in leaves]
  )


@pytest.fixture(scope='module', name='workdirs')
def fixture_workdirs(tmp_path_factory):
  """Step-0 checkpoints of random generators (raw weights and their average); the
  residual heads' zero-initialised head and curve kernels get random values too."""
  root = tmp_path_factory.mktemp('layouts')
  workdirs = {}
  for i, (name, layout) in enumerate(LAYOUTS.items()):
    config = tiny.get_config()
    config.model.update(layout)
    config.ema.decay = 0.999
    generator = models.generator_from_config(config.model)
    shapes = jax.eval_shape(generator.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))
    params, ema = (
      _random_like(shapes['params'], 100 + i),
      _random_like(shapes['params'], i),
    )
    workdirs[name] = str(root / name)
    manager = checkpoints.create_manager(workdirs[name])
    checkpoints.save(
      manager,
      0,
      params={'G_A': params},
      ema={'G_A': ema},
      config=config.to_dict(),
    )
    manager.wait_until_finished()
    manager.close()
  return workdirs


def _reference(workdir):
  restored = inference.restore(workdir, generators=('G_A',))
  assert restored.weights == 'ema'
  module = restored.generator.clone(conv_impl='xla')
  return jax.jit(lambda x: module.apply({'params': restored.params['G_A']}, x))


@pytest.mark.parametrize('name', LAYOUTS)
@pytest.mark.parametrize(
  'fmt',
  [
    'onnx',  # The hand-written graph: the fast tier checks it.
    pytest.param('stablehlo', marks=pytest.mark.slow),
    pytest.param('saved_model', marks=pytest.mark.slow),
    pytest.param('tflite', marks=pytest.mark.slow),
  ],
)
def test_exported_layout_computes_the_jax_generator(name, fmt, workdirs, tmp_path):
  if fmt == 'onnx':
    pytest.importorskip('onnxruntime')
  path = str(tmp_path / f'{name}.{fmt}')
  metadata = export.export(export.Request(workdirs[name], 'AtoB', fmt, path))
  assert metadata['weights'] == 'ema'
  assert {k: metadata['model'][k] for k in LAYOUTS[name]} == LAYOUTS[name]
  with open(export.metadata_path(path)) as f:
    saved = json.load(f)['model']
  assert {k: saved[k] for k in LAYOUTS[name]} == LAYOUTS[name]
  run = test_export.runtime(fmt, path)
  reference = _reference(workdirs[name])
  shapes = [(1, 16, 20, 3), (2, 13, 22, 3)]  # Odd sizes are padded and cropped back.
  for shape in [tuple(metadata['io']['shape'])] if fmt == 'tflite' else shapes:
    x = test_export.images(shape)
    want = np.asarray(reference(x))
    assert float(np.abs(want).std()) > 0.05  # A network that does not output a constant.
    np.testing.assert_allclose(run(x), want, atol=TOLERANCE, rtol=0)
