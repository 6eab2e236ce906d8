"""FID and KID, as pytorch-fid and torch-fidelity compute them; a command; the eval hook.

  python -m cyclegan_jax.evaluation.fid PATH_A PATH_B --inception_weights=FILE \
      [--kid [--kid_subset_size=N]] [--save_stats=OUT.npz] [--batch_size=N] [--json]

Each PATH is a folder of images or a statistics `.npz` (`mu`, `sigma`: the layout
pytorch-fid's `--save-stats` writes and reads, interchangeable both ways).
`--save_stats=OUT.npz` writes the statistics of PATH_A (then PATH_B may be left out).
Prints one line and, with --json, one JSON line: `fid`, `kid_mean`, `kid_std` (null
without --kid), the image counts, the seconds taken and images/s; a progress bar on
stderr while extracting. The --save_stats folder is created (or refused) first.

* Images as pytorch-fid reads them: the files of the folder (not its subfolders) with
  the extensions bmp jpg jpeg pgm png ppm tif tiff webp (lower case, as its glob), sorted,
  `PIL.Image.open(f).convert('RGB')`, scaled to [0, 1]; no resize but the network's own
  bilinear one to 299 x 299 (`cyclegan_jax.evaluation.inception`). Unreadable files are skipped and
  named.
* FID: pytorch-fid 0.3.0's `calculate_frechet_distance` on float64 statistics (`np.mean`,
  `np.cov`), `scipy.linalg.sqrtm(disp=False)`, its 1e-6 diagonal offset when the root is
  not finite, its imaginary-part check (atol 1e-3).
* KID: torch-fidelity's unbiased MMD² with the kernel (x·y / d + 1)³ over 100 subsets of
  `--kid_subset_size` (1000) features drawn without replacement by
  `np.random.RandomState(2020)`; mean and standard deviation (computed in float64). A
  folder with fewer images is refused, as torch-fidelity does; evaluation's KID of a
  small test split uses subsets as large as it, with a logged warning.

Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (`inception.WEIGHTS_URL`),
by flag, `--config.eval.inception_weights` or $CYCLEGAN_JAX_INCEPTION_WEIGHTS.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterator, Sequence
import warnings

from absl import flags
from absl import logging
import numpy as np
from PIL import Image
from scipy import linalg

from cyclegan_jax.cli import app
from cyclegan_jax.cli import console
from cyclegan_jax.cli import flags as cli_flags
from cyclegan_jax.evaluation import inception

# pytorch-fid 0.3.0's IMAGE_EXTENSIONS, matched case-sensitively as its glob does.
IMAGE_EXTENSIONS = ('bmp', 'jpg', 'jpeg', 'pgm', 'png', 'ppm', 'tif', 'tiff', 'webp')
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 2020  # torch-fidelity's default rng_seed.
FLAGS = flags.FLAGS


class FIDError(ValueError):
  """Input the metrics cannot be computed on (a one-line message)."""


# --------------------------------------------------------------------------------------
# The metrics.
# --------------------------------------------------------------------------------------


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(mu, sigma) of [N, D] features in float64, as pytorch-fid computes them."""
  act = np.asarray(features, np.float64)
  if act.ndim != 2 or len(act) < 2:
    raise FIDError(f'FID needs at least 2 feature vectors, got {len(act)}')
  return np.mean(act, axis=0), np.cov(act, rowvar=False)


def frechet_distance(
  mu1: np.ndarray,
  sigma1: np.ndarray,
  mu2: np.ndarray,
  sigma2: np.ndarray,
  eps: float = 1e-6,
) -> float:
  """pytorch-fid 0.3.0's `calculate_frechet_distance`.

  d² = |mu1 − mu2|² + Tr(sigma1 + sigma2 − 2 sqrt(sigma1 sigma2)).

  Raises:
    FIDError: the statistics have different dimensions.
    ValueError: sqrt(sigma1 sigma2) has an imaginary diagonal beyond 1e-3 (pytorch-fid's
      'Imaginary component' error).
  """
  mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
  sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise FIDError(
      f'the two statistics have different dimensions (mu {mu1.shape} vs '
      f'{mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape})'
    )
  diff = mu1 - mu2
  # scipy's warnings (e.g. LinAlgWarning on the singular products of few images) go to
  # the debug log: the console shows the result, --verbosity=1 the details.
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    # scipy >= 1.16 deprecates `disp`; pytorch-fid passes it, and so the same result.
    warnings.filterwarnings(
      'ignore', message='.*`disp` argument is deprecated', category=DeprecationWarning
    )
    covmean, _ = linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    if not np.isfinite(covmean).all():
      logging.warning(
        'fid calculation produces singular product; adding %s to diagonal of cov '
        'estimates',
        eps,
      )
      offset = np.eye(sigma1.shape[0]) * eps
      covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  for w in caught:
    logging.debug('FID: %s: %s', w.category.__name__, w.message)
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      m = np.max(np.abs(covmean.imag))
      raise ValueError(f'Imaginary component {m}')
    covmean = covmean.real
  tr_covmean = np.trace(covmean)
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


_GRAM_MAX = 4096  # Up to this many vectors per set, dot products are computed once.


def _cube(k: np.ndarray) -> np.ndarray:
  return k * k * k


def _mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
  """torch-fidelity's `mmd2(..., mmd_est='unbiased')` of three kernel matrices."""
  m = len(k_xx)
  kt_xx = (k_xx.sum(axis=1) - np.diagonal(k_xx)).sum()
  kt_yy = (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()
  return float((kt_xx + kt_yy) / (m * (m - 1)) - 2 * k_xy.sum(axis=0).sum() / (m * m))


def kid(
  features_1: np.ndarray,
  features_2: np.ndarray,
  *,
  subsets: int = KID_SUBSETS,
  subset_size: int = KID_SUBSET_SIZE,
  seed: int = KID_SEED,
  shrink: bool = False,
) -> tuple[float, float]:
  """Kernel Inception Distance: (mean, std) of the unbiased MMD² over random subsets.

  Subsets of `subset_size` vectors, drawn without replacement, the first set's then the
  second's, from `np.random.RandomState(seed)` (torch-fidelity's order). A set smaller
  than `subset_size` is refused, as torch-fidelity does; with `shrink`, the subsets
  are as large as the smaller set instead (logged: near equal sizes, every subset is
  nearly the whole set and the std says little).

  Raises:
    FIDError: fewer than 2 vectors in a set, a set smaller than `subset_size` (without
      `shrink`), or different dimensions.
  """
  f1 = np.asarray(features_1, np.float64)
  f2 = np.asarray(features_2, np.float64)
  if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
    raise FIDError(
      f'KID needs two [N, D] feature sets of one D, got {f1.shape} and {f2.shape}'
    )
  size = min(subset_size, len(f1), len(f2))
  if size < 2:
    raise FIDError(f'KID needs at least 2 images per set, got {len(f1)} and {len(f2)}')
  if size < subset_size and not shrink:
    raise FIDError(
      f'KID subsets of {subset_size} images need at least that many per set, got '
      f'{len(f1)} and {len(f2)}; pass --kid_subset_size={size} or fewer (as '
      "torch-fidelity's kid_subset_size)"
    )
  if size < subset_size:
    logging.warning(
      'KID: %d and %d images, fewer than subsets of %d: subsets of %d instead%s.',
      len(f1),
      len(f2),
      subset_size,
      size,
      ' (each one the whole smaller set: its std is ~0)'
      if size == min(len(f1), len(f2))
      else '',
    )
  rng = np.random.RandomState(seed)
  gamma = 1.0 / f1.shape[1]
  gram = max(len(f1), len(f2)) <= _GRAM_MAX
  if gram:  # Each subset's kernels are then entries of the full ones.
    k11, k22, k12 = (
      _cube(a @ b.T * gamma + 1) for a, b in ((f1, f1), (f2, f2), (f1, f2))
    )
  mmds = np.zeros(subsets)
  for i in range(subsets):
    i1 = rng.choice(len(f1), size, replace=False)
    i2 = rng.choice(len(f2), size, replace=False)
    if gram:
      kernels = k11[np.ix_(i1, i1)], k22[np.ix_(i2, i2)], k12[np.ix_(i1, i2)]
    else:
      x, y = f1[i1], f2[i2]
      kernels = tuple(_cube(a @ b.T * gamma + 1) for a, b in ((x, x), (y, y), (x, y)))
    mmds[i] = _mmd2_unbiased(*kernels)
  return float(np.mean(mmds)), float(np.std(mmds))


# --------------------------------------------------------------------------------------
# Statistics files and image folders.
# --------------------------------------------------------------------------------------


def load_stats(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(mu, sigma) of a pytorch-fid statistics `.npz`.

  Raises:
    FIDError: unreadable, no `mu` / `sigma`, or shapes that do not fit [D], [D, D].
  """
  try:
    with np.load(path, allow_pickle=False) as f:
      mu, sigma = f['mu'][:], f['sigma'][:]
  except KeyError:
    raise FIDError(
      f'{path}: not a FID statistics file (expected the arrays `mu` and '
      '`sigma`, as pytorch-fid --save-stats writes)'
    ) from None
  except (OSError, ValueError, EOFError) as e:
    raise FIDError(f'{path}: cannot read the statistics ({e})') from None
  if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
    raise FIDError(
      f'{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together '
      '(expected [D] and [D, D])'
    )
  return mu.astype(np.float64), sigma.astype(np.float64)


def save_stats(path: str, mu: np.ndarray, sigma: np.ndarray) -> None:
  """Writes (mu, sigma) as pytorch-fid's `--save-stats` does; never overwrites."""
  if os.path.exists(path):
    raise FIDError(
      f'{path} exists; refusing to overwrite it (remove it or choose '
      'another --save_stats)'
    )
  if not path.endswith('.npz'):
    raise FIDError(
      f'--save_stats={path}: the file name must end in .npz (numpy would append it)'
    )
  np.savez_compressed(path, mu=mu, sigma=sigma)


def list_images(folder: str) -> list[str]:
  """The image files of `folder` pytorch-fid would read, sorted."""
  names = os.listdir(folder)
  files = [
    os.path.join(folder, n)
    for n in names
    if n.rsplit('.', 1)[-1] in IMAGE_EXTENSIONS
    and '.' in n
    and os.path.isfile(os.path.join(folder, n))
  ]
  return sorted(files)


def read_image(path: str) -> np.ndarray | str:
  """uint8 [H, W, 3] of `PIL.Image.open(path).convert('RGB')`, or why it failed."""
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert('RGB'))
  except Exception as e:  # pylint: disable=broad-except
    # PIL raises many types for damaged files; the file is skipped and named.
    return f'{type(e).__name__}: {e}'


def folder_features(
  folder: str, net: inception.InceptionNet, *, progress: bool = True
) -> tuple[np.ndarray, list[str]]:
  """pool3 features of a folder's images and the files skipped as unreadable.

  Raises:
    FIDError: no image files, or fewer than 2 readable ones.
  """
  files = list_images(folder)
  if not files:
    others = [
      n for n in os.listdir(folder) if n.lower().rsplit('.', 1)[-1] in IMAGE_EXTENSIONS
    ]
    hint = (
      (
        f' ({len(others)} files have upper-case extensions, which pytorch-fid '
        'does not read either; rename them)'
      )
      if others
      else ''
    )
    raise FIDError(
      f'{folder}: no images (expected files ending in '
      f'{", ".join("." + e for e in IMAGE_EXTENSIONS)}){hint}'
    )
  extractor = inception.FeatureExtractor(net)
  bar = console.ProgressBar(
    len(files), os.path.basename(folder.rstrip('/')) or folder, enabled=progress
  )
  skipped = []

  def load(path):
    image = read_image(path)
    return path, image if isinstance(image, str) else inception.resize_to_299(image)

  for path, image in iterate_prefetched(files, load):
    if isinstance(image, str):
      skipped.append(path)
      print(f'\nwarning: skipped unreadable image {path} ({image})', file=sys.stderr)
    else:
      extractor.add_resized(image)
    bar.advance()
  bar.close()
  features = extractor.features()
  if len(features) < 2:
    raise FIDError(f'{folder}: {len(features)} readable image(s); FID needs at least 2')
  return features, skipped


def iterate_prefetched(
  items: Sequence[Any], load: Callable[[Any], Any], workers: int = 4, ahead: int = 16
) -> Iterator[Any]:
  """`load(item)` for each item in order, `ahead` of them loaded in worker threads."""
  from concurrent import futures  # pylint: disable=g-import-not-at-top

  with futures.ThreadPoolExecutor(workers) as pool:
    queue: list[futures.Future] = []
    it = iter(items)
    for item in it:
      queue.append(pool.submit(load, item))
      if len(queue) >= ahead:
        yield queue.pop(0).result()
    for f in queue:
      yield f.result()


# --------------------------------------------------------------------------------------
# The command.
# --------------------------------------------------------------------------------------


def define_flags() -> None:
  """The command's flags (defined by its entry point only: evaluation imports this)."""
  flags.DEFINE_string(
    'inception_weights',
    None,
    f"pytorch-fid's {inception.WEIGHTS_FILE} ({inception.WEIGHTS_URL}); default "
    f'${inception.WEIGHTS_ENV}.',
  )
  flags.DEFINE_bool('kid', False, 'Also compute KID (needs images, not .npz).')
  flags.DEFINE_integer(
    'kid_subset_size',
    KID_SUBSET_SIZE,
    'Images per KID subset; each folder needs at least this many.',
  )
  cli_flags.define_output(
    'Write the statistics of PATH_A (a folder) to this .npz.',
    name='save_stats',
    kind='path',
    required=False,
  )
  flags.DEFINE_integer(
    'batch_size', inception.BATCH_SIZE, 'Images per batch over all local devices.'
  )


def run(
  paths: Sequence[str],
  *,
  weights: str | None,
  with_kid: bool = False,
  kid_subset_size: int = KID_SUBSET_SIZE,
  stats_out: str | None = None,
  batch_size: int = inception.BATCH_SIZE,
  progress: bool = True,
) -> dict[str, Any]:
  """The command's result: FID (and KID) of two paths, each a folder or a `.npz`.

  Raises:
    FIDError, torch_weights.WeightsFileError: bad input (one-line messages).
  """
  start = time.perf_counter()
  if not 1 <= len(paths) <= 2 or (len(paths) == 1 and not stats_out):
    raise FIDError('expected PATH_A PATH_B (or one PATH with --save_stats=OUT.npz)')
  for path in paths:
    if not os.path.exists(path):
      raise FIDError(f'{path}: no such folder or file')
    if not os.path.isdir(path) and not path.endswith('.npz'):
      raise FIDError(f'{path}: neither a folder of images nor a statistics .npz')
    if with_kid and not os.path.isdir(path):
      raise FIDError(f'{path}: KID needs the images, not statistics; pass a folder')
  if stats_out and not os.path.isdir(paths[0]):
    raise FIDError(f'--save_stats: {paths[0]} is not a folder of images')
  if stats_out and os.path.exists(stats_out):
    raise FIDError(f'{stats_out} exists; refusing to overwrite it')
  if stats_out:  # Before any feature is extracted: a bad folder costs nothing.
    cli_flags.check_output(stats_out, 'path', '--save_stats')
  if batch_size < 1:
    raise FIDError(f'--batch_size must be positive, got {batch_size}')

  net = None
  if any(os.path.isdir(p) for p in paths):
    weights = inception.weights_path(weights)
    if not weights:
      raise FIDError(
        inception.missing_weights_message('FID').replace(
          '--config.eval.inception_weights', '--inception_weights'
        )
      )
    net = inception.InceptionNet(inception.load_weights(weights), batch_size=batch_size)

  stats, features, counts, skipped = [], [], [], []
  extract_s = 0.0
  for path in paths:
    if os.path.isdir(path):
      t = time.perf_counter()
      feats, bad = folder_features(path, net, progress=progress)
      extract_s += time.perf_counter() - t
      stats.append(statistics(feats))
      features.append(feats)
      counts.append(len(feats))
      skipped += bad
    else:
      stats.append(load_stats(path))
      features.append(None)
      counts.append(None)
  if stats_out:
    save_stats(stats_out, *stats[0])
  result: dict[str, Any] = {'fid': None, 'kid_mean': None, 'kid_std': None}
  if len(paths) == 2:
    result['fid'] = frechet_distance(*stats[0], *stats[1])
    if with_kid:
      result['kid_mean'], result['kid_std'] = kid(
        features[0], features[1], subset_size=kid_subset_size
      )
  images = sum(c or 0 for c in counts)
  result.update(
    {
      'images_a': counts[0],
      'images_b': counts[1] if len(counts) > 1 else None,
      'skipped': len(skipped),
      'seconds': round(time.perf_counter() - start, 3),
      'images_per_s': round(images / extract_s, 2) if extract_s else None,
    }
  )
  if stats_out:
    result['saved_stats'] = stats_out
  return result


def main(argv: Sequence[str]) -> app.Outcome:
  paths = argv[1:]
  if not 1 <= len(paths) <= 2 or (len(paths) == 1 and not FLAGS.save_stats):
    raise app.UsageError('expected PATH_A PATH_B (or one PATH with --save_stats=OUT.npz)')
  result = run(
    paths,
    weights=FLAGS.inception_weights,
    with_kid=FLAGS.kid,
    kid_subset_size=FLAGS.kid_subset_size,
    stats_out=FLAGS.save_stats,
    batch_size=FLAGS.batch_size,
  )
  return app.Outcome(result_line(paths, result), {'command': 'fid', **result})


def result_line(paths: Sequence[str], result: dict[str, Any]) -> str:
  """`run`'s result in words: FID (and KID) between the paths, or where stats went."""
  counts = [result['images_a'], result['images_b']]
  named = [
    path if count is None else f'{path} ({count} images)'
    for path, count in zip(paths, counts)
  ]
  clauses = []
  if result['fid'] is not None:
    kid_text = (
      f', KID {result["kid_mean"]:.6f} ± {result["kid_std"]:.6f}'
      if result['kid_mean'] is not None
      else ''
    )
    clauses.append(f'FID {result["fid"]:.4f}{kid_text} between {" and ".join(named)}')
  if result.get('saved_stats'):
    clauses.append(f'statistics of {named[0]} saved to {result["saved_stats"]}')
  if result['skipped']:
    clauses.append(f'{result["skipped"]} unreadable images skipped')
  text = '; '.join(clauses)
  return text[:1].upper() + text[1:] + '.'


def cli() -> None:
  """`cyclegan-jax-fid` and `python -m cyclegan_jax.evaluation.fid`."""
  app.run(main, prog='fid', define_flags=define_flags)


# --------------------------------------------------------------------------------------
# The evaluation hook (cyclegan_jax.evaluation.evaluate).
# --------------------------------------------------------------------------------------

_DOMAINS = {'AtoB': 'B', 'BtoA': 'A'}  # The domain each direction's fakes imitate.


class EvalFID:
  """FID/KID of each direction's translations against the target domain's real images.

  `collector(direction)` returns the callback that takes each translated uint8 image as
  evaluation produces it (features run on device meanwhile); `metrics(config)` then adds
  the real images of `config.eval.fid_reference` ('test' or 'train' split; its first
  `config.eval.max_images` where that is >= 0, like the translated ones) and returns
  {'AtoB/fid', 'AtoB/kid_mean', 'AtoB/kid_std', 'BtoA/...'} (the same on every process).
  """

  def __init__(self, net: inception.InceptionNet):
    self.net = net
    self.fakes: dict[str, inception.FeatureExtractor] = {}

  @classmethod
  def from_config(cls, config) -> EvalFID | None:
    """None (logged once, plainly) without a weights file; an error for a bad one."""
    path = inception.weights_path(config.eval.get('inception_weights'))
    if not path:
      logging.warning(inception.missing_weights_message('FID/KID'))
      return None
    if config.eval.get('fid_reference', 'test') not in ('test', 'train'):
      raise ValueError(
        f"config.eval.fid_reference must be 'test' or 'train', got "
        f'{config.eval.fid_reference!r}'
      )
    return cls(inception.InceptionNet(inception.load_weights(path)))

  def collector(self, direction: str) -> Callable[[np.ndarray], None]:
    self.fakes[direction] = inception.FeatureExtractor(self.net)
    return self.fakes[direction].add

  def metrics(self, config) -> dict[str, float]:
    import jax  # pylint: disable=g-import-not-at-top

    from cyclegan_jax.data import input_pipeline  # pylint: disable=g-import-not-at-top

    out = {}
    for direction, extractor in self.fakes.items():
      fake = _gather(extractor.features())
      domain = _DOMAINS[direction]
      reference = config.eval.get('fid_reference', 'test')
      if reference == 'test':  # The held-out images being scored: test, or validation.
        reference = config.eval.get('split', 'test')
      split = f'{reference}{domain}'
      try:
        ds, _ = input_pipeline._split_dataset(  # pylint: disable=protected-access
          config,
          split,
          process_index=jax.process_index(),
          process_count=jax.process_count(),
          max_images=config.eval.max_images,
        )
      except (FileNotFoundError, ValueError) as e:  # No real image in that split.
        logging.warning('%s: FID/KID skipped: %s', direction, e)
        continue
      real_extractor = inception.FeatureExtractor(self.net)
      for ex in ds.as_numpy_iterator():
        real_extractor.add(ex['image'])
      real = _gather(real_extractor.features())
      if len(fake) < 2 or len(real) < 2:
        logging.warning(
          '%s: FID/KID skipped: %d translated and %d real %s images; each '
          'needs at least 2.',
          direction,
          len(fake),
          len(real),
          split,
        )
        continue
      try:
        out[f'{direction}/fid'] = frechet_distance(*statistics(fake), *statistics(real))
      except ValueError as e:
        # The rest of the evaluation is done; keep it rather than fail it.
        logging.error('%s: FID failed (%s); reporting the other metrics.', direction, e)
        continue
      # Test splits are often smaller than KID's subsets: as before, smaller subsets.
      out[f'{direction}/kid_mean'], out[f'{direction}/kid_std'] = kid(
        fake, real, shrink=True
      )
      logging.info(
        '%s: FID %.4f, KID %.6f ± %.6f (%d translated vs %d real %s images).',
        direction,
        out[f'{direction}/fid'],
        out[f'{direction}/kid_mean'],
        out[f'{direction}/kid_std'],
        len(fake),
        len(real),
        split,
      )
    return out


def _gather(features: np.ndarray) -> np.ndarray:
  """Every process's features, in process order."""
  import jax  # pylint: disable=g-import-not-at-top

  if jax.process_count() == 1:
    return features
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  counts = np.asarray(multihost_utils.process_allgather(np.array([len(features)])))
  counts = counts.reshape(-1)
  padded = np.zeros((int(counts.max()), inception.FEATURES), np.float32)
  padded[: len(features)] = features
  gathered = np.asarray(multihost_utils.process_allgather(padded))
  return np.concatenate([gathered[p, : counts[p]] for p in range(len(counts))])


if __name__ == '__main__':
  cli()
