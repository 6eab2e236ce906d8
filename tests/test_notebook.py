"""examples/cyclegan_jax.ipynb: committed without outputs, and run top to bottom at tiny
settings by a real kernel (nbclient), as a person runs it, so that it cannot rot."""

import json
import os

import pytest

NOTEBOOK = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  'examples',
  'cyclegan_jax.ipynb',
)


def code_cells(notebook):
  return [c for c in notebook['cells'] if c['cell_type'] == 'code']


def test_notebook_is_committed_without_outputs():
  with open(NOTEBOOK, encoding='utf-8') as f:
    notebook = json.load(f)
  for cell in code_cells(notebook):
    assert cell['outputs'] == [] and cell['execution_count'] is None, cell['source'][:80]
  parameters = [
    c for c in code_cells(notebook) if 'parameters' in c['metadata'].get('tags', [])
  ]
  assert len(parameters) == 1  # papermill's parameters cell, with the tiny switch.
  assert 'CYCLEGAN_JAX_NOTEBOOK_TINY' in ''.join(parameters[0]['source'])


def _requirement(name):
  try:
    return __import__(name)
  except ImportError:
    if os.environ.get('CI'):
      pytest.fail(f'CI must run the notebook: {name} is missing (requirements-dev.txt).')
    pytest.skip(f'{name} is not installed (requirements-dev.txt)')


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
  nbformat = _requirement('nbformat')
  nbclient = _requirement('nbclient')
  _requirement('ipykernel')
  monkeypatch.setenv('CYCLEGAN_JAX_NOTEBOOK_TINY', '1')
  monkeypatch.setenv('CYCLEGAN_JAX_NOTEBOOK_DIR', str(tmp_path))
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
    notebook,
    timeout=900,
    kernel_name='python3',
    resources={'metadata': {'path': os.path.dirname(NOTEBOOK)}},
  )
  client.execute()  # Raises CellExecutionError, naming the cell, if one fails.

  outputs = [o for c in code_cells(notebook) for o in c['outputs']]
  text = ''.join(o.get('text', '') for o in outputs if o['output_type'] == 'stream')
  images = [o for o in outputs if 'image/png' in o.get('data', {})]
  # Two sample grids, the demo's two translations, the zoo's and pix2pix's.
  assert len(images) == 6, text[-3000:]
  assert 'is a stand-in with random weights' in text
  assert 'AtoB: PSNR' in text and 'BtoA: PSNR' in text
  for produced in (
    'demo/checkpoints',
    'demo_AtoB/scene.png',
    'demo_AtoB/chelsea.png',
    'zoo_AtoB/chelsea.png',
    'pix2pix/checkpoints',
    'p2p_AtoB/pair.png',
  ):
    assert os.path.exists(tmp_path / produced), produced
