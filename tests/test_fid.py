"""FID / KID against pytorch-fid and torch-fidelity; the command; the evaluation hook.

The reference numbers in tests/data/fid/metrics.npz were computed by pytorch-fid 0.3.0's
`calculate_frechet_distance` and torch-fidelity 0.4.0's `kid_features_to_metric` (in
float64) by tests/data/fid/make_fixtures.py.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings

import fid_fixtures
import numpy as np
import pytest
from test_inception import torch_shapes

from cyclegan_jax.evaluation import fid
from cyclegan_jax.evaluation import inception
from cyclegan_jax.nets import torch_weights

FID_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'fid')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def metrics():
  with np.load(os.path.join(FID_DATA, 'metrics.npz')) as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope='module')
def weights_file(tmp_path_factory) -> str:
  path = str(tmp_path_factory.mktemp('fid') / 'random_inception.pth')
  fid_fixtures.write_pth(path, fid_fixtures.random_state_dict(torch_shapes()))
  return path


@pytest.mark.parametrize('case', ['big', 'small', 'many'])
def test_fid_matches_pytorch_fid(metrics, case):
  f1, f2 = metrics[f'{case}_1'], metrics[f'{case}_2']
  got = fid.frechet_distance(*fid.statistics(f1), *fid.statistics(f2))
  np.testing.assert_allclose(got, metrics[f'{case}_fid'], rtol=1e-6)
  assert got > 0


@pytest.mark.parametrize('case', ['big', 'small', 'many'])
def test_kid_matches_torch_fidelity(metrics, case):
  f1, f2 = metrics[f'{case}_1'], metrics[f'{case}_2']
  # make_fixtures.py passed torch-fidelity kid_subset_size=min(1000, n_1, n_2).
  mean, std = fid.kid(f1, f2, subset_size=min(1000, len(f1), len(f2)))
  np.testing.assert_allclose([mean, std], metrics[f'{case}_kid'], rtol=1e-6)
  # torch-fidelity's own float32 run differs from the float64 formula by rounding only.
  np.testing.assert_allclose([mean, std], metrics[f'{case}_kid_float32'], rtol=1e-4)
  assert std > 0  # Subsets differ: the larger set is subsampled in every case.


def test_kid_is_seeded(metrics):
  f1, f2 = metrics['big_1'], metrics['big_2']
  assert fid.kid(f1, f2, subset_size=100) == fid.kid(f1, f2, subset_size=100)
  assert fid.kid(f1, f2, subset_size=100, seed=1) != fid.kid(f1, f2, subset_size=100)
  with pytest.raises(fid.FIDError, match='at least 2'):
    fid.kid(f1[:1], f2, shrink=True)


def test_kid_refuses_sets_smaller_than_its_subsets_as_torch_fidelity(metrics, caplog):
  f1, f2 = metrics['big_1'], metrics['big_2']  # 200 and 150 vectors.
  with pytest.raises(
    fid.FIDError,
    match=r'^KID subsets of 1000 images need at least that many per set, got 200 and '
    r'150; pass --kid_subset_size=150 or fewer',
  ):
    fid.kid(f1, f2)
  # Shrinking (what evaluation does) says so, and equals asking for that size.
  with caplog.at_level(logging.WARNING):
    shrunk = fid.kid(f1, f2, shrink=True)
  assert shrunk == fid.kid(f1, f2, subset_size=150)
  assert 'subsets of 150 instead' in caplog.text and 'std is ~0' in caplog.text


def test_fid_of_singular_statistics_prints_no_library_warning(caplog):
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # Any warning reaching the console fails here.
    with caplog.at_level(logging.DEBUG):
      got = fid.frechet_distance(np.zeros(2), np.zeros((2, 2)), np.zeros(2), np.eye(2))
  assert np.isfinite(got)
  assert 'LinAlgWarning' in caplog.text  # Kept for --verbosity=1.


def test_fid_error_paths(monkeypatch):
  with pytest.raises(fid.FIDError, match='different dimensions'):
    fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
  # A product with a negative eigenvalue: pytorch-fid's imaginary-component error.
  with pytest.raises(ValueError, match='Imaginary component'):
    fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([-1.0, 1.0]))
  with pytest.raises(fid.FIDError, match='at least 2'):
    fid.statistics(np.zeros((1, 8)))
  # A non-finite root: retried with 1e-6 added to both diagonals, as pytorch-fid does.
  calls = []
  real_sqrtm = fid.linalg.sqrtm

  def sqrtm(a, disp=True):
    calls.append(a)
    if len(calls) == 1:
      return np.full_like(a, np.nan), np.inf
    return real_sqrtm(a)

  monkeypatch.setattr(fid.linalg, 'sqrtm', sqrtm)
  s1, s2 = np.diag([1.0, 2.0]), np.diag([3.0, 4.0])
  got = fid.frechet_distance(np.zeros(2), s1, np.ones(2), s2)
  np.testing.assert_allclose(calls[1], (s1 + 1e-6 * np.eye(2)) @ (s2 + 1e-6 * np.eye(2)))
  want = 2 + 3 + 7 - 2 * (np.sqrt(3 + 4e-6 + 1e-12) + np.sqrt(8 + 6e-6 + 1e-12))
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_stats_npz_round_trips_with_pytorch_fid(metrics, tmp_path):
  # Written by pytorch-fid's save_fid_stats layout (np.savez_compressed, mu / sigma).
  mu, sigma = fid.load_stats(os.path.join(FID_DATA, 'stats_pytorch_fid.npz'))
  want_mu, want_sigma = fid.statistics(metrics['big_1'])
  np.testing.assert_allclose(mu, want_mu, rtol=1e-12)
  np.testing.assert_allclose(sigma, want_sigma, rtol=1e-12, atol=1e-15)
  out = str(tmp_path / 'ours.npz')
  fid.save_stats(out, want_mu, want_sigma)
  with np.load(out) as f:  # As pytorch-fid's compute_statistics_of_path reads it.
    np.testing.assert_array_equal(f['mu'][:], want_mu)
    np.testing.assert_array_equal(f['sigma'][:], want_sigma)
  with pytest.raises(fid.FIDError, match='refusing to overwrite'):
    fid.save_stats(out, want_mu, want_sigma)
  np.savez(tmp_path / 'bad.npz', mu=np.zeros(3), sigma=np.zeros((4, 4)))
  with pytest.raises(fid.FIDError, match='do not fit together'):
    fid.load_stats(str(tmp_path / 'bad.npz'))
  np.savez(tmp_path / 'other.npz', m=np.zeros(3))
  with pytest.raises(
    fid.FIDError, match='not a FID statistics file \\(expected the arrays `mu`'
  ):
    fid.load_stats(str(tmp_path / 'other.npz'))


def test_list_images_is_pytorch_fids_selection(tmp_path):
  for name in ('b.png', 'a.jpg', 'c.JPG', 'd.txt', 'e.webp', 'png'):
    (tmp_path / name).write_bytes(b'')
  (tmp_path / 'sub.png').mkdir()
  assert [os.path.basename(f) for f in fid.list_images(str(tmp_path))] == [
    'a.jpg',
    'b.png',
    'e.webp',
  ]


def image_folder(path, names):
  os.makedirs(path, exist_ok=True)
  for name in names:
    shutil.copy(os.path.join(FID_DATA, 'images', name), path)
  return str(path)


@pytest.mark.slow  # Over 8 s on 2 cores.
def test_command_on_folders_and_stats(weights_file, tmp_path, monkeypatch):
  names = sorted(os.listdir(os.path.join(FID_DATA, 'images')))
  a = image_folder(tmp_path / 'a', names)
  b = image_folder(tmp_path / 'b', names[1:4])
  (tmp_path / 'b' / 'zz_broken.png').write_bytes(b'not a png')
  # The statistics reach frechet_distance (tested above); with 5 images in 2048
  # dimensions its matrix root would take most of this test's time.
  seen = []
  monkeypatch.setattr(fid, 'frechet_distance', lambda *args: seen.append(args) or 1.5)
  stats = str(tmp_path / 'a_stats.npz')
  result = fid.run(
    [a, b],
    weights=weights_file,
    with_kid=True,
    kid_subset_size=3,
    stats_out=stats,
    batch_size=4,
    progress=False,
  )
  with np.load(os.path.join(FID_DATA, 'features.npz')) as f:
    ref = f['features']
  want = fid.statistics(ref) + fid.statistics(ref[1:4])
  for got, expected in zip(seen[0], want):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(
    result['kid_mean'], fid.kid(ref, ref[1:4], subset_size=3)[0], rtol=1e-4
  )
  assert (result['fid'], result['images_a'], result['images_b'], result['skipped']) == (
    1.5,
    5,
    3,
    1,
  )
  assert result['seconds'] > 0 and result['images_per_s'] > 0
  # The saved statistics stand in for the folder.
  again = fid.run([stats, b], weights=weights_file, batch_size=4, progress=False)
  for got, expected in zip(seen[1], seen[0]):
    np.testing.assert_array_equal(got, expected)
  assert again['kid_mean'] is None and again['images_a'] is None


@pytest.mark.slow  # Over 8 s on 2 cores.
def test_command_input_errors(weights_file, tmp_path):
  names = sorted(os.listdir(os.path.join(FID_DATA, 'images')))
  a = image_folder(tmp_path / 'a', names[:2])
  empty = str(tmp_path / 'empty')
  os.makedirs(empty)
  one = image_folder(tmp_path / 'one', names[:1])
  (tmp_path / 'one' / 'broken.jpg').write_bytes(b'')
  np.savez(tmp_path / 's3.npz', mu=np.zeros(3), sigma=np.eye(3))
  np.savez(tmp_path / 's4.npz', mu=np.zeros(4), sigma=np.eye(4))
  cases = [
    ([a, empty], {}, 'empty: no images'),
    ([a, one], {}, r'one: 1 readable image\(s\); FID needs at least 2'),
    ([str(tmp_path / 's3.npz'), str(tmp_path / 's4.npz')], {}, 'different dimensions'),
    ([a, str(tmp_path / 's3.npz')], {'with_kid': True}, 'KID needs the images'),
    ([a, str(tmp_path / 'nope')], {}, 'nope: no such folder or file'),
    ([a], {}, 'expected PATH_A PATH_B'),
    ([a, a], {'stats_out': str(tmp_path / 's3.npz')}, 'refusing to overwrite'),
  ]
  for paths, kwargs, message in cases:
    with pytest.raises(fid.FIDError, match=message) as e:
      fid.run(paths, weights=weights_file, batch_size=2, progress=False, **kwargs)
    assert '\n' not in str(e.value)
  os.environ.pop(inception.WEIGHTS_ENV, None)
  with pytest.raises(fid.FIDError, match='--inception_weights') as e:
    fid.run([a, a], weights=None, progress=False)
  assert inception.WEIGHTS_URL in str(e.value)
  with pytest.raises(torch_weights.WeightsFileError, match='G_resnet6_ngf6.pth: not a'):
    fid.run(
      [a, a],
      weights=os.path.join(ROOT, 'tests', 'data', 'G_resnet6_ngf6.pth'),
      progress=False,
    )


def test_eval_without_weights_logs_once_where_to_get_them(monkeypatch):
  from configs import default  # pylint: disable=g-import-not-at-top

  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  messages = []
  handler = logging.Handler()
  handler.emit = lambda record: messages.append(record.getMessage())
  logging.getLogger('absl').addHandler(handler)
  try:
    assert fid.EvalFID.from_config(default.get_config()) is None
  finally:
    logging.getLogger('absl').removeHandler(handler)
  assert len(messages) == 1 and inception.WEIGHTS_URL in messages[0]
  assert 'FID/KID skipped' in messages[0]


@pytest.mark.slow
def test_command_line_prints_a_line_and_with_json_one_json_line(weights_file, tmp_path):
  a = image_folder(tmp_path / 'a', sorted(os.listdir(os.path.join(FID_DATA, 'images'))))
  env = {
    **os.environ,
    'PYTHONPATH': ROOT,
    inception.WEIGHTS_ENV: weights_file,
    'XLA_FLAGS': '',
  }
  done = subprocess.run(
    [
      sys.executable,
      '-m',
      'cyclegan_jax.evaluation.fid',
      a,
      a,
      '--kid',
      '--kid_subset_size=5',
      '--batch_size=5',
      '--json',
    ],
    capture_output=True,
    text=True,
    env=env,
    cwd=ROOT,
    check=False,
  )
  assert done.returncode == 0, done.stderr
  human, last = done.stdout.strip().splitlines()
  result = json.loads(last)
  assert human.startswith('FID ') and f'{a} (5 images)' in human
  # Same set: 0 up to the rounding of a singular 2048-d root (5 images).
  assert abs(result['fid']) < 0.1 and result['images_a'] == 5
  assert '5/5' in done.stderr  # The progress bar.
  assert 'Warning' not in done.stderr  # scipy's LinAlgWarning goes to the debug log.
  bad = subprocess.run(
    [sys.executable, '-m', 'cyclegan_jax.evaluation.fid', a, str(tmp_path / 'x')],
    capture_output=True,
    text=True,
    env=env,
    cwd=ROOT,
    check=False,
  )
  assert bad.returncode == 1
  assert bad.stderr.strip().splitlines()[-1].startswith('fid: error: ')


@pytest.mark.slow
def test_evaluation_reports_fid_and_kid(weights_file, tmp_path, monkeypatch):
  from cyclegan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from tests import tiny_run  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path / 'run')
  shutil.copytree(tiny_run.trained_workdir(), workdir)
  config = tiny_run.tiny_config()
  config.eval.inception_weights = weights_file
  # The formula is tested above; its 2048-d matrix root costs a minute per direction here.
  seen = []

  def fast_distance(mu1, sigma1, mu2, sigma2):
    seen.append((len(mu1), sigma1.shape))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2))

  monkeypatch.setattr(fid, 'frechet_distance', fast_distance)
  summary = evaluate.evaluate(config, workdir)
  assert seen == [(2048, (2048, 2048))] * 2
  for direction in ('AtoB', 'BtoA'):
    assert summary[f'{direction}/fid'] > 0
    kid = [summary[f'{direction}/kid_mean'], summary[f'{direction}/kid_std']]
    assert np.isfinite(kid).all()
  step_dir = os.path.join(workdir, 'eval', 'step_2')
  with open(os.path.join(step_dir, 'metrics.json')) as f:
    report = json.load(f)
  assert report['metrics']['AtoB/fid'] == summary['AtoB/fid']
  with open(os.path.join(step_dir, 'index.html'), encoding='utf-8') as f:
    assert 'BtoA/fid' in f.read()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  tags = set()
  for path in tf.io.gfile.glob(os.path.join(workdir, 'eval', 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags |= {v.tag for v in event.summary.value}
  assert {'AtoB/fid', 'BtoA/kid_mean'} <= tags
  config.eval.fid_reference = 'val'
  with pytest.raises(
    ValueError, match="fid_reference='val': must be one of 'test', 'train'"
  ):
    evaluate.evaluate(config, workdir)
