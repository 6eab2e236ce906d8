"""The browser demo's server, over HTTP without a browser: translate's output, the
directions a checkpoint holds, test images, and every error in one sentence."""

import io
import json
import os
import re
import threading
import urllib.error
import urllib.request

import numpy as np
from PIL import Image
import pytest

from cyclegan_jax.deploy import convert
from cyclegan_jax.deploy import translate
from cyclegan_jax.deploy.webapp import demo as demo_lib
from cyclegan_jax.deploy.webapp import examples
from cyclegan_jax.deploy.webapp import server as server_lib

DATA = os.path.join(os.path.dirname(__file__), 'data')


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
  """A zoo-style checkpoint: official-layout weights of one A→B generator."""
  workdir = str(tmp_path_factory.mktemp('converted'))
  convert.convert(workdir, g_AtoB=os.path.join(DATA, 'G_resnet6_ngf6.pth'))
  return workdir


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
  """Two photos of odd sizes (one JPEG), offered as the test images."""
  folder = tmp_path_factory.mktemp('photos')
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)).save(
    folder / 'a.png'
  )
  Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)).save(
    folder / 'b.jpg', quality=90
  )
  return str(folder)


def serve(demo):
  """A running server on a free port, and its URL."""
  server = server_lib.make_server(demo, '127.0.0.1', 0, max_bytes=200_000)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  return server


@pytest.fixture(scope='module')
def app(converted, photos):
  server = serve(demo_lib.load(converted, examples_folder=photos))
  yield server
  server.shutdown()
  server.server_close()


def request(server, path, data=None, headers=None):
  """(status, content type, body) of a GET, or a POST when `data` is given."""
  req = urllib.request.Request(server.url.rstrip('/') + path, data=data)
  for key, value in (headers or {}).items():
    req.add_header(key, value)
  try:
    with urllib.request.urlopen(req, timeout=60) as r:
      return r.status, r.headers['Content-Type'], r.read()
  except urllib.error.HTTPError as e:
    return e.code, e.headers['Content-Type'], e.read()


def error_of(response):
  status, media_type, body = response
  assert media_type == 'application/json', body[:200]
  message = json.loads(body)['error']
  assert '\n' not in message and 'Traceback' not in message
  return status, message


def translated_by_cli(workdir, source, tmp_path, **flags):
  out = str(tmp_path / 'cli_out')
  (written,) = translate.run(
    workdir=workdir, input_path=source, output=out, progress=False, **flags
  )
  return np.asarray(Image.open(written)).astype(int)


def test_info_lists_the_directions_the_checkpoint_holds(app):
  status, media_type, body = request(app, '/api/info')
  assert status == 200 and media_type == 'application/json'
  info = json.loads(body)
  assert [(d['name'], d['available']) for d in info['directions']] == [
    ('AtoB', True),
    ('BtoA', False),
  ]
  assert info['examples'] == {'AtoB': ['a.png', 'b.jpg']}
  assert info['step'] == 0 and info['method'] == 'cycle_gan'


def test_page_is_served(app):
  status, media_type, body = request(app, '/')
  assert status == 200 and media_type.startswith('text/html')
  assert b'id="translate"' in body


@pytest.mark.parametrize('name', ['a.png', pytest.param('b.jpg', marks=pytest.mark.slow)])
def test_translation_is_translates_output(app, converted, photos, tmp_path, name):
  path = os.path.join(photos, name)
  with open(path, 'rb') as f:
    status, media_type, body = request(
      app, f'/api/translate?direction=AtoB&name={name}', f.read()
    )
  assert status == 200 and media_type == 'image/png'
  got = np.asarray(Image.open(io.BytesIO(body))).astype(int)
  want = translated_by_cli(converted, path, tmp_path)
  assert got.shape == want.shape
  assert np.abs(got - want).max() <= 1


def test_a_picked_test_image_is_the_file(app, photos):
  status, media_type, body = request(app, '/api/example?direction=AtoB&index=1')
  assert status == 200 and media_type == 'image/jpeg'
  with open(os.path.join(photos, 'b.jpg'), 'rb') as f:
    assert body == f.read()


@pytest.mark.slow  # Compiles the tiled path twice (the app's and translate's).
def test_large_images_are_tiled_as_translate_tiles(converted, tmp_path):
  source = str(tmp_path / 'big.png')
  image = np.random.default_rng(2).integers(0, 256, (70, 90, 3), dtype=np.uint8)
  Image.fromarray(image).save(source)
  demo = demo_lib.load(converted, tile=32, overlap=8)
  with open(source, 'rb') as f:
    out = demo.translate('AtoB', f.read(), 'big.png')
  got = np.asarray(Image.open(io.BytesIO(out.png))).astype(int)
  assert (out.width, out.height) == (90, 70)
  want = translated_by_cli(converted, source, tmp_path, tile=32, overlap=8)
  assert np.abs(got - want).max() <= 1


@pytest.mark.parametrize(
  'path, data, status, message',
  [
    ('/api/translate?direction=AtoB', b'', 400, 'No image: upload one'),
    ('/api/translate?direction=AtoB&name=x.png', b'not an image', 400, 'x.png is not'),
    ('/api/translate?direction=BtoA', b'x', 400, r'no B→A generator \(G_B\)'),
    ('/api/translate?direction=up', b'x', 400, "Unknown direction 'up'"),
    ('/api/translate?direction=AtoB', b'x' * 200_001, 413, 'more than the 0.2 MB'),
    ('/api/example?direction=AtoB&index=7', None, 400, 'no test image 7'),
    ('/api/example?direction=AtoB', None, 400, 'index=N'),
    ('/nothing', None, 404, 'nothing at /nothing'),
    ('/api/nothing', b'x', 404, 'nothing to post to'),
  ],
)
def test_errors_are_one_sentence(app, path, data, status, message):
  got_status, got = error_of(request(app, path, data))
  assert got_status == status
  assert re.search(message, got), got


def test_only_requests_for_localhost_are_answered(app):
  status, message = error_of(request(app, '/api/info', headers={'Host': 'evil.test'}))
  assert status == 403 and 'localhost only' in message
  assert request(app, '/api/info', headers={'Host': 'localhost:1'})[0] == 200


def test_a_taken_port_is_one_line(app):
  with pytest.raises(ValueError, match=r'Cannot listen on 127\.0\.0\.1:\d+ .*--port'):
    server_lib.make_server(app.demo, '127.0.0.1', app.server_address[1])


@pytest.mark.parametrize(
  'host, loopback',
  [('127.0.0.1', True), ('localhost', True), ('::1', True), ('0.0.0.0', False)],
)
def test_loopback_hosts(host, loopback):
  assert server_lib.is_loopback(host) == loopback


def test_host_header_names():
  assert server_lib.host_name('localhost:8000') == 'localhost'
  assert server_lib.host_name('[::1]:80') == '[::1]'
  assert server_lib.host_name('127.0.0.1') == '127.0.0.1'


def test_examples_of_synthetic_datasets():
  shapes = {'dataset': 'synthetic:shapes', 'load_size': 24}
  found = examples.for_domain(shapes, 'B', limit=3)
  assert [e.name for e in found] == [f'shapes_testB_000{i}.png' for i in range(3)]
  assert Image.open(io.BytesIO(found[0].data)).size == (24, 24)
  pairs = examples.for_domain({**shapes, 'dataset_mode': 'aligned'}, 'B', limit=2)
  assert [e.name for e in pairs] == ['shapes_test_0000.png', 'shapes_test_0001.png']
  assert examples.for_domain({'dataset': 'cycle_gan/horse2zebra'}, 'A') == []


def test_examples_of_folder_datasets(tmp_path):
  image = np.zeros((8, 12, 3), np.uint8)
  (tmp_path / 'h2z' / 'testA').mkdir(parents=True)
  Image.fromarray(image).save(tmp_path / 'h2z' / 'testA' / 'horse.jpg')
  unpaired = {'dataset': f'folder:{tmp_path / "h2z"}'}
  assert [e.name for e in examples.for_domain(unpaired, 'A')] == ['horse.jpg']
  assert examples.for_domain(unpaired, 'B') == []


@pytest.mark.slow  # The paired loader imports TensorFlow.
def test_examples_of_side_by_side_pairs_are_the_domains_half(tmp_path):
  side_by_side = tmp_path / 'facades' / 'test'
  side_by_side.mkdir(parents=True)
  both = np.zeros((8, 12, 3), np.uint8)
  both[:, 6:] = 200  # B, the right half.
  Image.fromarray(both).save(side_by_side / '1.png')
  config = {'dataset': f'folder:{tmp_path / "facades"}', 'dataset_mode': 'aligned'}
  (b,) = examples.for_domain(config, 'B')
  assert b.name == '1_B.png'
  assert np.asarray(Image.open(io.BytesIO(b.data))).min() == 200


def test_examples_folder_must_exist(tmp_path):
  with pytest.raises(ValueError, match='is not a folder'):
    examples.from_folder(str(tmp_path / 'missing'))


@pytest.mark.slow  # Compiles a U-Net twice (the app's and translate's).
def test_a_pix2pix_model_offers_its_one_direction(tmp_path):
  workdir = str(tmp_path / 'facades')
  convert.convert_pix2pix(
    workdir, g=os.path.join(DATA, 'G_unet128_ngf2_batch_legacy.pth'), direction='BtoA'
  )
  demo = demo_lib.load(workdir)
  info = demo.describe()
  assert [(d['name'], d['available']) for d in info['directions']] == [('BtoA', True)]
  assert info['test_mode'].startswith('train-mode')  # The official test.py default.
  with pytest.raises(demo_lib.DemoError, match="Unknown direction 'AtoB'.*B→A"):
    demo.translate('AtoB', b'x')
  source = str(tmp_path / 'label.png')
  Image.fromarray(
    np.random.default_rng(3).integers(0, 256, (40, 30, 3), dtype=np.uint8)
  ).save(source)
  with open(source, 'rb') as f:
    out = demo.translate('BtoA', f.read(), 'label.png')
  got = np.asarray(Image.open(io.BytesIO(out.png))).astype(int)
  want = translated_by_cli(workdir, source, tmp_path, direction='BtoA')
  assert np.abs(got - want).max() <= 1
