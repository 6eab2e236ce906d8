"""The paper's method comparison (Tables 1-3): train every row over seeds, score, tabulate.

  python -m cyclegan_jax.studies.compare --workdir=/tmp/cyclegan_compare \
      [--methods=cycle_gan,pix2pix,simgan,...] [--seeds=0,1,2] \
      [--config=configs/compare.py] [--config.FIELD=VALUE ...] \
      [--inception_weights=PATH] [--vgg_weights=PATH]

`--config` is the *base*: the benchmark, the networks and the schedule every row shares
(default `configs/compare.py`, `synthetic:streets` at CPU size); `--config.FIELD=VALUE`
overrides it for every row. Each row (`ROWS`, in the paper's order) sets its method's
own fields on a copy of the base. A method that translates both ways trains once per
seed in DIR/<row>/seed_<s>; a one-way method (pix2pix) trains once per direction in
DIR/<row>/<AtoB|BtoA>/seed_<s>, and a direction the method cannot train is left empty
with the reason. Every run is evaluated (`evaluate.evaluate`: images, PSNR/SSIM, FID/KID
with Inception weights) and its images scored:

  Table 1  realism per direction: PSNR / SSIM against the truth, FID / KID;
  Table 2  labels→photo (BtoA): the FCN-score of the generated photos by the benchmark's
           segmenter (`fcn_score`), and its score on the real photos (the ceiling);
  Table 3  photo→labels (AtoB): the generated label maps against the true labels.

Each cell is the mean ± standard deviation over the seeds. DIR/compare.md and
DIR/compare.json are rewritten after every run, with the command. Running the same
command again resumes: a finished run (its compare_result.json) is re-read, an
interrupted one resumes from its last checkpoint; a run directory made with another
config is an error. A row that cannot run here (its method is not in this build, or
feature_gan without VGG-16 weights) is listed in every table with the reason.

This module's top level imports no JAX.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import ml_collections

from cyclegan_jax import methods
from cyclegan_jax.cli import app
from cyclegan_jax.cli import config_checks
from cyclegan_jax.cli import errors
from cyclegan_jax.evaluation import eval_dirs
from cyclegan_jax.studies import ablation
from cyclegan_jax.studies import compare_tables
from cyclegan_jax.studies import runner

RESULT_FILE = 'compare_result.json'
DIRECTIONS = ('AtoB', 'BtoA')
# The weights files' environment variables (evaluation/inception.py, nets/vgg.py).
INCEPTION_ENV = 'CYCLEGAN_JAX_INCEPTION_WEIGHTS'
VGG_ENV = 'CYCLEGAN_JAX_VGG_WEIGHTS'
# Fields that name a weights file, not what a run trained: changing them reuses runs.
NOT_TRAINING = ('eval.inception_weights', 'baseline.vgg_weights')

Config = ml_collections.ConfigDict
Result = dict[str, Any]


# --------------------------------------------------------------------------------------
# The rows
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
  """One row of the tables: a method with its own settings on top of the base."""

  label: str  # The paper's name of the row.
  method: str  # config.method.
  settings: Callable[[Config], None]  # Sets the row's fields on a copy of the base.
  # Why the row cannot run with this config (None: it can); e.g. a missing weights file.
  needs: Callable[[Config], str | None] = lambda config: None


def _cycle_gan(config: Config) -> None:
  config.method = 'cycle_gan'


def _ablation_row(variant: str) -> Callable[[Config], None]:
  def settings(config: Config) -> None:
    _cycle_gan(config)
    ablation.apply_variant(config, variant)

  return settings


def pix2pix_generator(crop_size: int, fallback: str) -> str:
  """pix2pix's U-Net where the crop allows one (its 7 or 8 halvings), else `fallback`."""
  if crop_size % 256 == 0:
    return 'unet_256'
  if crop_size % 128 == 0:
    return 'unet_128'
  return fallback


def _pix2pix(config: Config) -> None:
  # The official --model pix2pix defaults (configs/pix2pix.py) on the base's data, sizes
  # and schedule.
  config.method = 'pix2pix'
  config.dataset_mode = 'aligned'
  config.pool_size = 0
  config.model.netG = pix2pix_generator(config.crop_size, config.model.netG)
  if config.model.netG.startswith('unet'):
    # The ResNet generator is built with instance norm and no dropout only.
    config.model.norm = 'batch'
    config.model.use_dropout = True
  config.model.norm_D = 'batch'
  config.loss.gan_mode = 'vanilla'
  config.loss.lambda_L1 = 100.0
  config.loss.lambda_identity = 0.0


def _baseline(method: str) -> Callable[[Config], None]:
  # simgan, feature_gan, bigan: CycleGAN's networks and training, as the paper's
  # "same architecture and details as our method" (configs/simgan.py).
  def settings(config: Config) -> None:
    config.method = method
    config.loss.lambda_identity = 0.0

  return settings


def _cogan(config: Config) -> None:
  # The public CoGAN's loss and solver (configs/cogan.py) at the base's size, with the
  # CPU demo's widths (configs/demo_cogan.py); the paper ran CoGAN's own networks.
  config.method = 'cogan'
  config.pool_size = 0
  config.batch_size = 32
  config.num_epochs_decay = 0  # A fixed rate.
  config.loss.gan_mode = 'vanilla'
  config.loss.lambda_A = 0.0
  config.loss.lambda_B = 0.0
  config.loss.lambda_identity = 0.0
  config.cogan.nz = 32
  config.cogan.ngf = config.model.ngf
  config.cogan.ndf = config.model.ndf
  config.cogan.invert_steps = 200


def vgg_weights_path(config: Config) -> str | None:
  """feature_gan's VGG-16 file: `baseline.vgg_weights`, else $CYCLEGAN_JAX_VGG_WEIGHTS."""
  baseline = config.get('baseline') or {}
  return baseline.get('vgg_weights') or os.environ.get(VGG_ENV) or None


def _needs_vgg(config: Config) -> str | None:
  if vgg_weights_path(config):
    return None
  return (
    'not run: no VGG-16 weights (pass --vgg_weights=vgg16-397923af.pth or set '
    f'${VGG_ENV})'
  )


# Row name → row, in the paper's order: Tables 2 and 3, then the ablation (Tables 4, 5).
ROWS: dict[str, Row] = {
  'cogan': Row('CoGAN', 'cogan', _cogan),
  'bigan': Row('BiGAN/ALI', 'bigan', _baseline('bigan')),
  'simgan': Row('SimGAN', 'simgan', _baseline('simgan')),
  'feature_gan': Row(
    'Feature loss + GAN', 'feature_gan', _baseline('feature_gan'), _needs_vgg
  ),
  'cycle_gan': Row('CycleGAN', 'cycle_gan', _cycle_gan),
  'pix2pix': Row('pix2pix', 'pix2pix', _pix2pix),
  **{
    name: Row(ablation.PAPER_ROWS[name], 'cycle_gan', _ablation_row(name))
    for name in ablation.VARIANTS
    if name != 'cyclegan'  # The full objective is the cycle_gan row.
  },
}


def parse_rows(names: Sequence[str] | None) -> list[str]:
  """The requested rows in the paper's order (None or empty: all).

  Raises:
    ValueError: a name that is not a row (the message lists them).
  """
  if not names:
    return list(ROWS)
  unknown = [n for n in names if n not in ROWS]
  if unknown:
    raise ValueError(f'Unknown comparison row {unknown[0]!r}; valid: {", ".join(ROWS)}.')
  return [r for r in ROWS if r in set(names)]


def parse_seeds(values: Sequence[str | int] | None) -> list[int]:
  """Distinct integer seeds in the given order (None or empty: [0])."""
  seeds: list[int] = []
  for value in values or ['0']:
    try:
      seed = int(value)
    except ValueError:
      raise ValueError(
        f'--seeds: {value!r} is not an integer; e.g. --seeds=0,1,2.'
      ) from None
    if seed < 0:
      raise ValueError(f'--seeds: {seed} is negative; seeds are integers >= 0.')
    if seed not in seeds:
      seeds.append(seed)
  return seeds


def row_config(
  base: Config,
  name: str,
  seed: int,
  direction: str | None = None,
  *,
  vgg_weights: str | None = None,
  inception_weights: str | None = None,
) -> Config:
  """A copy of `base` (still locked) with row `name`'s settings, `seed` and direction."""
  row = ROWS[name]
  config = copy.deepcopy(base)
  row.settings(config)
  config.seed = seed
  if direction is not None:
    config.direction = direction
  if vgg_weights and row.method == 'feature_gan':
    config.baseline.vgg_weights = vgg_weights
  if inception_weights:
    config.eval.inception_weights = inception_weights
  return config


# --------------------------------------------------------------------------------------
# The plan: which runs fill which cells
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run: a row at a seed, in both directions or in one."""

  row: str
  seed: int
  direction: str | None  # None: the method translates both ways in one run.
  config: Config

  @property
  def name(self) -> str:
    """Its directory under the workdir."""
    parts = [self.row, *([self.direction] if self.direction else []), f'seed_{self.seed}']
    return os.path.join(*parts)


@dataclasses.dataclass
class Plan:
  """The runs of the comparison and why the cells without one are empty."""

  runs: list[Run]
  # Row → why it does not run at all.
  skipped: dict[str, str]
  # Row → {direction: why the row has no run for it}.
  missing: dict[str, dict[str, str]]


def _directions(config: Config) -> tuple[str, ...]:
  """The directions a model trained with `config` translates."""
  return tuple(methods.get(config.method).configure(config).directions)


def plan(
  base: Config,
  rows: Sequence[str],
  seeds: Sequence[int],
  *,
  vgg_weights: str | None = None,
  inception_weights: str | None = None,
) -> Plan:
  """Every run, seed by seed and row by row, each config validated before any trains.

  Raises:
    ValueError: a bad field in some row's config (the message names the row).
  """
  runs: list[Run] = []
  skipped: dict[str, str] = {}
  missing: dict[str, dict[str, str]] = {}
  make = lambda name, seed, direction=None: row_config(  # noqa: E731
    base,
    name,
    seed,
    direction,
    vgg_weights=vgg_weights,
    inception_weights=inception_weights,
  )
  for name in rows:
    row = ROWS[name]
    if row.method not in methods.METHODS:
      skipped[name] = f'not run: no method {row.method!r} in this build'
      continue
    reason = row.needs(make(name, seeds[0]))
    if reason:
      skipped[name] = reason
      continue
    both = make(name, seeds[0])
    if set(DIRECTIONS) <= set(_directions(both)):
      row_runs = [Run(name, s, None, make(name, s)) for s in seeds]
    else:
      row_runs = []
      for direction in DIRECTIONS:
        one = make(name, seeds[0], direction)
        translates = _directions(one)
        if direction in translates:
          row_runs += [Run(name, s, direction, make(name, s, direction)) for s in seeds]
        else:
          missing.setdefault(name, {})[direction] = (
            f'{row.method} translates {", ".join(translates)} only'
          )
    for run in row_runs:
      try:
        config_checks.validate(run.config)
      except ValueError as e:
        raise ValueError(f'Row {name}: {e}') from None
    runs += row_runs
  order = {s: i for i, s in enumerate(seeds)}
  runs.sort(key=lambda r: order[r.seed])  # Seed by seed: a full table comes first.
  return Plan(runs, skipped, missing)


# --------------------------------------------------------------------------------------
# Scoring a run's evaluation images
# --------------------------------------------------------------------------------------


def labelled(dataset: str) -> bool:
  """Whether `dataset` has Cityscapes label maps (Tables 2 and 3 apply)."""
  return dataset == 'synthetic:streets' or dataset.startswith('folder:')


class Scorer:
  """Scores evaluation image folders; trains or loads the segmenter on first need."""

  def __init__(self, dataset: str, settings: Any = None, cache: str | None = None):
    from cyclegan_jax.evaluation import fcn_score  # pylint: disable=g-import-not-at-top

    self.dataset = dataset
    self.settings = settings or fcn_score.Settings()
    self.cache = cache
    self.labelled = labelled(dataset)
    self.classes = fcn_score.benchmark_classes(dataset) if self.labelled else None
    self.key = fcn_score.cache_key(dataset, self.settings) if self.labelled else None
    self._model = None

  def model(self) -> Any:
    """The benchmark's segmenter (cached on disk by `fcn_score`)."""
    from cyclegan_jax.evaluation import fcn_score  # pylint: disable=g-import-not-at-top

    if self._model is None:
      self._model = fcn_score.load_or_train(
        self.dataset, self.settings, cache=self.cache, progress=True
      )
    return self._model

  def _three(self, scores: Mapping[str, Any]) -> dict[str, Any]:
    from cyclegan_jax.data import labels  # pylint: disable=g-import-not-at-top

    classes = self.classes if self.classes is not None else range(labels.NUM_CLASSES)
    return {
      'pixel_acc': float(scores['pixel_acc']),
      'class_acc': float(scores['class_acc']),
      'class_iou': float(scores['class_iou']),
      'per_class_iou': {
        labels.CLASS_NAMES[c]: float(scores['per_class_iou'][c]) for c in classes
      },
    }

  def score(self, eval_dir: str, images: str = 'fake') -> dict[str, Any]:
    """{'photo_to_labels': ..., 'labels_to_photo': ...} of the directions evaluated
    (`images='real'`: of the inputs left unchanged)."""
    from cyclegan_jax.evaluation import fcn_score  # pylint: disable=g-import-not-at-top
    from cyclegan_jax.evaluation import segmentation  # pylint: disable=g-import-not-at-top

    out: dict[str, Any] = {}
    if not self.labelled:
      return out
    atob = os.path.join(eval_dir, 'images', 'AtoB')
    if os.path.isdir(atob):
      _, fakes, ids = fcn_score.read_eval_images(atob, 'photo_to_labels', images)
      out['photo_to_labels'] = self._three(
        segmentation.score_photo_to_labels(fakes, ids, classes=self.classes)
      )
    btoa = os.path.join(eval_dir, 'images', 'BtoA')
    if os.path.isdir(btoa):
      _, fakes, ids = fcn_score.read_eval_images(btoa, 'labels_to_photo', images)
      out['labels_to_photo'] = self._three(
        fcn_score.score_labels_to_photo(fakes, ids, self.model(), classes=self.classes)
      )
    return out

  def ceiling(self) -> dict[str, Any] | None:
    """The segmenter's scores on the real test photos (Table 2's top row)."""
    from cyclegan_jax.evaluation import fcn_score  # pylint: disable=g-import-not-at-top

    if not self.labelled:
      return None
    return self._three(
      fcn_score.ceiling(self.dataset, self.model(), classes=self.classes)
    )


def input_scores(
  inputs: Mapping[str, Any], result: Result, run_dir: str, scorer: Scorer
) -> dict[str, Any]:
  """`inputs` completed from one finished run: the test inputs left unchanged, scored
  as a translation is (Table 1 from its evaluation's `*_identity` metrics, Tables 2
  and 3 from the `_real` images of its evaluation folder). Every run evaluates the
  same test images, so the first run of each direction serves."""
  out = {k: dict(v) for k, v in inputs.items()}
  table1 = out.setdefault('table1', {})
  for key, value in result['metrics'].items():
    if key.endswith(('/psnr_identity', '/ssim_identity')):
      table1.setdefault(key[: -len('_identity')], float(value))
  wanted = {
    score: table
    for table, (score, _) in compare_tables.LABEL_TABLES.items()
    if score in result['scores'] and table not in out
  }
  if wanted:
    scores = scorer.score(eval_dir(run_dir, result['steps']), images='real')
    for score, table in wanted.items():
      out[table] = scores[score]
  return out


def eval_dir(run_dir: str, step: int) -> str:
  """The evaluation folder of `step` (else the latest one evaluated)."""
  exact = eval_dirs.path(run_dir, step)
  if os.path.isdir(exact):
    return exact
  try:
    return eval_dirs.latest(run_dir)
  except FileNotFoundError:
    raise ValueError(
      f'{run_dir} has no evaluation; delete it to rerun that run.'
    ) from None


# --------------------------------------------------------------------------------------
# Running one run
# --------------------------------------------------------------------------------------


def load_result(run_dir: str, config: Config) -> Result | None:
  """The saved result of a finished run, or None if it has not finished.

  Raises:
    ValueError: the run finished with another config.
  """
  path = os.path.join(run_dir, RESULT_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    result = json.load(f)
  differ = ablation.changed_fields(result['config'], config, ignore=NOT_TRAINING)
  if differ:
    raise ValueError(
      f'{run_dir} holds a finished run with another config (it differs in '
      f'{", ".join(differ)}). Use another --workdir, or delete that directory to '
      'rerun it.'
    )
  return result


def _has_fid(metrics: Mapping[str, float]) -> bool:
  return any(k.endswith('/fid') for k in metrics)


def run_one(
  run: Run,
  workdir: str,
  *,
  scorer: Scorer,
  train_fn: ablation.TrainFn,
  evaluate_fn: ablation.EvaluateFn,
  want_fid: bool,
) -> Result:
  """Trains, evaluates and scores `run` (or re-reads it); saves and returns its result.

  A finished run is re-read; it is evaluated again only where FID is now wanted and it
  has none, and rescored only where the segmenter changed.
  """
  run_dir = os.path.join(workdir, run.name)
  result = load_result(run_dir, run.config)
  if result is not None and want_fid and not _has_fid(result['metrics']):
    logging.info('%s: evaluating again for FID/KID.', run.name)
    result['metrics'] = {k: float(v) for k, v in evaluate_fn(run.config, run_dir).items()}
    result['segmenter'] = None  # The images were written again.
  if result is not None and result.get('segmenter') == scorer.key:
    logging.info('%s: finished before; re-read its results.', run.name)
    return result
  if result is None:
    logging.info(
      '%s: training %s steps in %s.', run.name, run.config.num_train_steps, run_dir
    )
    result = {
      'row': run.row,
      'label': ROWS[run.row].label,
      'method': run.config.method,
      'seed': run.seed,
      'direction': run.direction,
      **ablation.train_and_score(
        run.config, run_dir, train_fn=train_fn, evaluate_fn=evaluate_fn
      ),
    }
  result['scores'] = scorer.score(eval_dir(run_dir, result['steps']))
  result['segmenter'] = scorer.key
  with open(os.path.join(run_dir, RESULT_FILE), 'w') as f:
    json.dump(result, f, indent=1)
  return result


# --------------------------------------------------------------------------------------
# All runs
# --------------------------------------------------------------------------------------


def inception_weights_path(given: str | None) -> str | None:
  """The Inception weights file: `given`, else $CYCLEGAN_JAX_INCEPTION_WEIGHTS."""
  return given or os.environ.get(INCEPTION_ENV) or None


def _check_file(path: str | None, flag: str) -> None:
  if path and not os.path.isfile(os.path.expanduser(path)):
    raise ValueError(f'{flag}={path}: no such file; give the path of the weights file.')


def run_compare(
  base: Config,
  workdir: str,
  rows: Sequence[str] | None = None,
  seeds: Sequence[int] = (0,),
  *,
  command: str = '',
  inception_weights: str | None = None,
  vgg_weights: str | None = None,
  segmenter: Any = None,
  cache_dir: str | None = None,
  train_fn: ablation.TrainFn | None = None,
  evaluate_fn: ablation.EvaluateFn | None = None,
) -> compare_tables.Tables:
  """Trains, evaluates and scores every run of the comparison; writes the tables.

  Args:
    base: the config every row starts from.
    workdir: runs go in `workdir/<row>[/<direction>]/seed_<s>`, the tables in `workdir`.
    rows: rows to run (None: all), run in the paper's order.
    seeds: seeds of every row.
    command: the command line, recorded in the tables.
    inception_weights: pytorch-fid's Inception file for FID/KID (None: the environment's,
      else no FID).
    vgg_weights: feature_gan's VGG-16 file (None: the config's or the environment's,
      else the row is skipped with the reason).
    segmenter: `fcn_score.Settings` of the Table 2 segmenter (None: its defaults).
    cache_dir: the segmenter cache (None: fcn_score's default).
    train_fn: `train.train_and_evaluate` unless given (for tests).
    evaluate_fn: `evaluate.evaluate` unless given (for tests).

  Returns:
    The tables, as written.

  Raises:
    ValueError: an unknown row, a bad seed or config, a missing weights file, or a
      finished run directory with another config.
  """
  config_checks.validate(base)
  names = parse_rows(rows)
  seeds = parse_seeds(seeds)
  if any(ROWS[n].method == 'cycle_gan' for n in names):
    ablation.check_base(base)  # Or the CycleGAN row would not be CycleGAN.
  inception = inception_weights_path(inception_weights)
  _check_file(inception, '--inception_weights')
  _check_file(vgg_weights, '--vgg_weights')
  the_plan = plan(
    base, names, seeds, vgg_weights=vgg_weights, inception_weights=inception_weights
  )
  if train_fn is None:
    from cyclegan_jax.train import loop as train  # pylint: disable=g-import-not-at-top

    train_fn = train.train_and_evaluate
  if evaluate_fn is None:
    from cyclegan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

    evaluate_fn = evaluate.evaluate
  errors.check_writable_folder(workdir, '--workdir')
  scorer = Scorer(base.dataset, segmenter, cache_dir)
  ceiling: dict[str, Any] | None = None
  inputs: dict[str, Any] = {}
  results: list[Result] = []
  progress = runner.run_progress(len(the_plan.runs), 'compare')

  def write() -> compare_tables.Tables:
    tables = compare_tables.build(
      {n: (ROWS[n].label, ROWS[n].method) for n in names},
      seeds,
      results,
      skipped=the_plan.skipped,
      missing=the_plan.missing,
      ceiling=ceiling,
      fid=bool(inception),
      labelled=scorer.labelled,
      inputs=inputs,
    )
    compare_tables.write(
      workdir,
      tables,
      base=base,
      command=command,
      segmenter=scorer.key,
      runs=results,
    )
    return tables

  tables = write()  # The skipped rows are in the tables before the first run ends.
  for run in the_plan.runs:
    result = run_one(
      run,
      workdir,
      scorer=scorer,
      train_fn=train_fn,
      evaluate_fn=evaluate_fn,
      want_fid=bool(inception),
    )
    if ceiling is None and 'labels_to_photo' in result['scores']:
      ceiling = scorer.ceiling()
    inputs = input_scores(inputs, result, os.path.join(workdir, run.name), scorer)
    results.append(result)
    tables = write()
    progress.advance()
  progress.close()
  logging.info(
    'Wrote %s and %s.',
    os.path.join(workdir, compare_tables.TABLE_MD),
    os.path.join(workdir, compare_tables.TABLE_JSON),
  )
  return tables


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def define_flags() -> None:
  """The command's flags (defined by its entry point only: config files import this)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.cli import flags as cli_flags  # pylint: disable=g-import-not-at-top

  default_config = runner.repo_config('compare.py')
  cli_flags.define_workdir(
    'Runs train in WORKDIR/<row>[/<direction>]/seed_<s>; the tables go here.',
    output=True,
  )
  flags.DEFINE_list(
    'methods', None, f'Rows to run (default: all), from: {", ".join(ROWS)}.'
  )
  flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds of every row.')
  config_flags.DEFINE_config_file(
    'config',
    default_config,
    'The base config every row starts from (the benchmark, networks, schedule).',
    lock_config=True,
  )
  flags.DEFINE_string(
    'inception_weights',
    None,
    f"pytorch-fid's Inception weights for FID/KID (default ${INCEPTION_ENV}).",
  )
  flags.DEFINE_string(
    'vgg_weights',
    None,
    f"torchvision's vgg16-397923af.pth for feature_gan (default ${VGG_ENV}).",
  )
  flags.DEFINE_string(
    'cache_dir', None, 'Segmenter cache (default $CYCLEGAN_JAX_CACHE or ~/.cache).'
  )
  flags.DEFINE_integer('seg_size', 64, 'Segmenter training size (pixels).')
  flags.DEFINE_integer('seg_steps', 800, 'Segmenter training steps.')


def main(argv: Sequence[str]) -> app.Outcome:
  from absl import flags  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.evaluation import fcn_score  # pylint: disable=g-import-not-at-top

  f = flags.FLAGS
  parse_rows(f.methods)
  seeds = parse_seeds(f.seeds)
  settings = fcn_score.Settings(size=f.seg_size, steps=f.seg_steps)
  settings.check()

  def study(command: str) -> list[Result]:
    tables = run_compare(
      f.config,
      f.workdir,
      f.methods,
      seeds,
      command=command,
      inception_weights=f.inception_weights,
      vgg_weights=f.vgg_weights,
      segmenter=settings,
      cache_dir=f.cache_dir,
    )
    return tables.runs

  return runner.study_main(
    argv,
    module='cyclegan_jax.studies.compare',
    study=study,
    workdir=f.workdir,
    report_files=(compare_tables.TABLE_MD, compare_tables.TABLE_JSON),
  )


def cli() -> None:
  """`cyclegan-jax-compare` and `python -m cyclegan_jax.studies.compare`."""
  app.run(main, prog='compare', define_flags=define_flags)


if __name__ == '__main__':
  cli()
