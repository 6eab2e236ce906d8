"""How much of a photo look a distribution-matching pull can learn, and from how many images.

  python benchmarks/look_signal.py --look=colour [--histories=0,16,64] [--trials=10]

Two questions about one look of the real-photo benchmark (`configs/study.py`):

* `map` lines: A→B PSNR / SSIM on the held-out test photos (whole 72 px images) of
  global colour maps fitted to the train crops' colour distributions alone (unpaired):
  the input unchanged, per-channel histogram matching, and the linear map that is
  optimal transport between Gaussians of the two domains' colours. A recipe that
  matches colour distributions (the patch loss, `loss.lambda_swd`) aims at the last;
  a look no global colour map reaches (texture) needs more than colours.
* `floor` lines: the patch loss (`losses.colour_distribution_loss`, with the default
  projections and samples) between one crop and a crop of domain B, each with
  a history of `h` more crops, as `B vs B` (both from domain B: the sampling noise)
  and `A vs B` (the look). Where the two are equal, a loss with that history cannot
  tell the domains apart; the gap is the signal the generators get.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
import numpy as np
import scipy.linalg

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE)]

import jax  # noqa: E402  # pylint: disable=g-import-not-at-top
import jax.numpy as jnp  # noqa: E402  # pylint: disable=g-import-not-at-top

from configs import default  # noqa: E402  # pylint: disable=g-import-not-at-top
from configs import study  # noqa: E402  # pylint: disable=g-import-not-at-top
from cyclegan_jax.evaluation import metrics  # noqa: E402  # pylint: disable=g-import-not-at-top
from cyclegan_jax.methods import losses  # noqa: E402  # pylint: disable=g-import-not-at-top
from cyclegan_jax.studies import photo_looks  # noqa: E402  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string('look', 'colour', 'configs/study.py photo setting (a look).')
flags.DEFINE_list('histories', ['0', '16', '64'], 'History sizes for the floor lines.')
flags.DEFINE_integer('trials', 10, 'Draws averaged per floor line.')
flags.DEFINE_integer('crop', 64, 'Train crop side (the study trains on 64 px crops).')
flags.DEFINE_integer('seed', 0, 'Sampling seed.')


def histogram_match(x: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
  """Each channel of `x` through the map of `source`'s quantiles to `target`'s."""
  levels = np.linspace(0.0, 1.0, 257)
  out = np.empty_like(x)
  for c in range(x.shape[-1]):
    src = np.quantile(source[..., c], levels)
    dst = np.quantile(target[..., c], levels)
    out[..., c] = np.interp(x[..., c], src, dst)
  return out


def gaussian_transport(
  x: np.ndarray, source: np.ndarray, target: np.ndarray
) -> np.ndarray:
  """`x`'s colours through the optimal transport map between Gaussians fitted to the
  colours of `source` and of `target` (linear: mean shift and a 3×3 matrix)."""
  s = source.reshape(-1, source.shape[-1]).astype(np.float64)
  t = target.reshape(-1, target.shape[-1]).astype(np.float64)
  cov_s, cov_t = np.cov(s.T), np.cov(t.T)
  root = np.real(scipy.linalg.sqrtm(cov_s))
  inv_root = np.linalg.inv(root)
  matrix = inv_root @ np.real(scipy.linalg.sqrtm(root @ cov_t @ root)) @ inv_root
  flat = (x.reshape(-1, x.shape[-1]) - s.mean(0)) @ matrix.T + t.mean(0)
  return flat.reshape(x.shape).astype(np.float32)


def score(images: np.ndarray, truth: np.ndarray) -> dict[str, float]:
  """Mean PSNR and SSIM of [-1, 1] images against the truth, as the study scores."""
  x = metrics.quantize(metrics.to_unit(jnp.asarray(images)))
  y = metrics.quantize(metrics.to_unit(jnp.asarray(truth)))
  return {
    'psnr': round(float(jnp.mean(metrics.psnr(x, y))), 2),
    'ssim': round(float(jnp.mean(metrics.ssim(x, y))), 3),
  }


def map_lines(data: dict[str, np.ndarray]) -> list[dict[str, object]]:
  a, b, test, truth = data['trainA'], data['trainB'], data['testA'], data['testA_gt']
  maps = {
    'input unchanged': test,
    'per-channel histogram matching': histogram_match(test, a, b),
    'Gaussian colour transport': gaussian_transport(test, a, b),
  }
  return [{'map': name, **score(x, truth)} for name, x in maps.items()]


def floor_lines(
  data: dict[str, np.ndarray], histories: list[int], trials: int, seed: int
) -> list[dict[str, object]]:
  loss = default.get_config().loss
  patch_loss = jax.jit(
    lambda fake, real, key, fake_history, real_history: losses.colour_distribution_loss(
      fake,
      real,
      key,
      num_projections=loss.swd_projections,
      max_samples=loss.swd_samples,
      fake_history=fake_history if fake_history.shape[0] else None,
      real_history=real_history if real_history.shape[0] else None,
    )
  )
  rng = np.random.default_rng(seed)
  a, b = data['trainA'], data['trainB']
  lines = []
  for h in histories:
    values = {'B vs B': [], 'A vs B': []}
    for trial in range(trials):
      picks = rng.choice(len(b), 2 * (h + 1), replace=False)
      real = b[picks[h + 1 :]]
      sources = {'B vs B': b[picks[: h + 1]], 'A vs B': a[rng.choice(len(a), h + 1)]}
      for name, fake in sources.items():
        value = patch_loss(fake[:1], real[:1], jax.random.key(trial), fake[1:], real[1:])
        values[name].append(float(value))
    lines.append(
      {'history': h, **{k: round(float(np.mean(v)), 4) for k, v in values.items()}}
    )
  return lines


def main(argv):
  del argv
  config = study.get_config(FLAGS.look)
  root = config.dataset.removeprefix('folder:')
  data = {s: photo_looks.load_split(root, s, FLAGS.crop) for s in ('trainA', 'trainB')}
  for split in ('testA', 'testA_gt'):
    data[split] = photo_looks.load_split(root, split, study.PHOTO_SIZE)
  for line in map_lines(data):
    print(json.dumps({'look': FLAGS.look, **line}), flush=True)
  for line in floor_lines(
    data, [int(h) for h in FLAGS.histories], FLAGS.trials, FLAGS.seed
  ):
    print(json.dumps({'look': FLAGS.look, **line}), flush=True)


if __name__ == '__main__':
  app.run(main)
