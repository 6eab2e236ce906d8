"""Writes the FID/KID fixtures of tests/test_inception.py and tests/test_fid.py.

Runs pytorch-fid 0.3.0's own network and formulas (and torch-fidelity's KID) once, with
RANDOM Inception weights in pytorch-fid's key layout: the seeded numpy recipe of
tests/fid_fixtures.py, written with its torch-free `.pth` writer and loaded here with
`torch.load`, so the tests rebuild the same file without torch. Needs torch, which the
project does not; in a separate venv, from the repository root:

  python3 -m venv /tmp/tv
  /tmp/tv/bin/pip install torch pytorch-fid==0.3.0 torch-fidelity==0.4.0 \
      pillow scipy numpy
  /tmp/tv/bin/python tests/data/fid/make_fixtures.py

torchvision's wheels may be CUDA builds whose import fails against a CPU torch while
registering `torchvision::nms`; an empty `torchvision._meta_registrations` module avoids
that (pytorch-fid needs only torchvision's Python model classes).

Writes into tests/data/fid/:
  images/*.{png,jpg}  small images of several sizes and modes (RGB, L, RGBA, P; JPEG)
  features.npz        per image (sorted names): pytorch-fid's 2048-d pool3 features
                      (`features`) and the 1008 logits of its fc layer (`logits`)
  metrics.npz         fixed feature sets and pytorch-fid's FID / torch-fidelity's KID
  stats_pytorch_fid.npz   `mu` / `sigma` as pytorch-fid's --save-stats writes them
"""

import os
import sys
import types

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', '..'))  # tests/, for fid_fixtures.
sys.modules.setdefault(
  'torchvision._meta_registrations', types.ModuleType('torchvision._meta_registrations')
)

import fid_fixtures  # pylint: disable=g-import-not-at-top,wrong-import-position
from pytorch_fid import fid_score  # pylint: disable=g-import-not-at-top,wrong-import-position
from pytorch_fid import inception as pf_inception  # pylint: disable=g-import-not-at-top
import torch  # pylint: disable=g-import-not-at-top,wrong-import-position
from torch_fidelity import metric_kid  # pylint: disable=g-import-not-at-top


def make_images(folder: str) -> None:
  """Smooth patterns plus a little noise: small files, distinct features."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)

  def pattern(h, w, phase):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = np.stack(
      [
        np.sin(x / (7 + phase) + phase),
        np.cos(y / (11 - phase)),
        np.sin((x + y) / 17 + 2 * phase),
      ],
      -1,
    )
    rgb = 127.5 * (rgb + 1) + rng.normal(0, 6, (h, w, 3))
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)

  Image.fromarray(pattern(40, 56, 0.0)).save(os.path.join(folder, 'a_rgb_40x56.png'))
  Image.fromarray(pattern(320, 400, 1.0)).save(
    os.path.join(folder, 'b_rgb_320x400.jpg'), quality=90
  )
  Image.fromarray(pattern(299, 299, 2.0)[..., 1]).save(
    os.path.join(folder, 'c_gray_299x299.png')
  )
  rgba = np.concatenate([pattern(123, 77, 3.0), np.full((123, 77, 1), 200, np.uint8)], -1)
  Image.fromarray(rgba).save(os.path.join(folder, 'd_rgba_123x77.png'))
  Image.fromarray(pattern(64, 500, 4.0)).convert('P', palette=Image.ADAPTIVE).save(
    os.path.join(folder, 'e_palette_64x500.png')
  )


def build_model(weights_path: str):
  """pytorch-fid's InceptionV3([3]) and the full network, on weights_path."""
  state_dict = torch.load(weights_path, weights_only=True)
  pf_inception.load_state_dict_from_url = lambda *a, **k: state_dict
  model = pf_inception.InceptionV3([pf_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
  full = pf_inception.fid_inception_v3()
  return model.eval(), full.eval()


def kid_reference(f1: np.ndarray, f2: np.ndarray, dtype) -> tuple[float, float]:
  size = min(1000, len(f1), len(f2))
  out = metric_kid.kid_features_to_metric(
    torch.from_numpy(f1.astype(dtype)),
    torch.from_numpy(f2.astype(dtype)),
    kid_subsets=100,
    kid_subset_size=size,
    rng_seed=2020,
    verbose=False,
  )
  return out[metric_kid.KEY_METRIC_KID_MEAN], out[metric_kid.KEY_METRIC_KID_STD]


def feature_set(rng, n: int, d: int, shift: float) -> np.ndarray:
  """Non-negative, correlated, like pooled ReLU features."""
  mix = rng.normal(size=(d, d)) / np.sqrt(d)
  return np.maximum(rng.normal(shift, 1.0, (n, d)) @ mix + 0.5, 0).astype(np.float32)


def main() -> None:
  torch.manual_seed(0)
  image_dir = os.path.join(HERE, 'images')
  make_images(image_dir)
  weights = '/tmp/fid_random_weights.pth'
  # Key layout and shapes from pytorch-fid's own network (no weights loaded yet).
  shell = pf_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)  # pylint: disable=protected-access
  for name, block in [
    ('Mixed_5b', pf_inception.FIDInceptionA(192, 32)),
    ('Mixed_5c', pf_inception.FIDInceptionA(256, 64)),
    ('Mixed_5d', pf_inception.FIDInceptionA(288, 64)),
    ('Mixed_6b', pf_inception.FIDInceptionC(768, 128)),
    ('Mixed_6c', pf_inception.FIDInceptionC(768, 160)),
    ('Mixed_6d', pf_inception.FIDInceptionC(768, 160)),
    ('Mixed_6e', pf_inception.FIDInceptionC(768, 192)),
    ('Mixed_7b', pf_inception.FIDInceptionE_1(1280)),
    ('Mixed_7c', pf_inception.FIDInceptionE_2(2048)),
  ]:
    setattr(shell, name, block)
  shapes = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
  fid_fixtures.write_pth(weights, fid_fixtures.random_state_dict(shapes))
  model, full = build_model(weights)

  files = sorted(os.path.join(image_dir, f) for f in os.listdir(image_dir))
  features, logits = [], []
  with torch.no_grad():
    for f in files:
      act = fid_score.get_activations(
        [f], model, batch_size=1, dims=2048, device='cpu', num_workers=0
      )
      features.append(act[0].astype(np.float32))
      logits.append(full.fc(torch.from_numpy(act.astype(np.float32))).numpy()[0])
  np.savez(
    os.path.join(HERE, 'features.npz'),
    names=np.array([os.path.basename(f) for f in files]),
    features=np.stack(features),
    logits=np.stack(logits),
  )

  rng = np.random.default_rng(1)
  sets = {
    'big_1': feature_set(rng, 200, 64, 0.0),
    'big_2': feature_set(rng, 150, 64, 0.3),
    'small_1': feature_set(rng, 40, 64, 0.0),
    'small_2': feature_set(rng, 30, 64, 0.2),
    'many_1': feature_set(rng, 1100, 32, 0.0),
    'many_2': feature_set(rng, 1050, 32, 0.1),
  }
  out = dict(sets)
  for case in ('big', 'small', 'many'):
    f1, f2 = sets[f'{case}_1'], sets[f'{case}_2']
    # As pytorch-fid: float64 activations (its pred_arr), np.mean / np.cov.
    a1, a2 = f1.astype(np.float64), f2.astype(np.float64)
    m1, s1 = np.mean(a1, 0), np.cov(a1, rowvar=False)
    m2, s2 = np.mean(a2, 0), np.cov(a2, rowvar=False)
    out[f'{case}_fid'] = np.float64(fid_score.calculate_frechet_distance(m1, s1, m2, s2))
    out[f'{case}_kid'] = np.array(kid_reference(f1, f2, np.float64))
    out[f'{case}_kid_float32'] = np.array(kid_reference(f1, f2, np.float32))
    print(case, out[f'{case}_fid'], out[f'{case}_kid'], out[f'{case}_kid_float32'])
    if case == 'big':
      np.savez_compressed(os.path.join(HERE, 'stats_pytorch_fid.npz'), mu=m1, sigma=s1)
  np.savez(os.path.join(HERE, 'metrics.npz'), **out)
  print('wrote', HERE, 'features', np.stack(features).mean(), np.stack(features).std())


if __name__ == '__main__':
  main()
