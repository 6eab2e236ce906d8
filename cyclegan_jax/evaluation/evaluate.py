"""Evaluates a checkpoint on the test (or validation) splits: images, a gallery, metrics.

  python -m cyclegan_jax.main --mode=eval --config=configs/demo.py --workdir=DIR \
      [--config.eval.step=N] [--config.eval.max_images=K]

Restores only the generators and the config of the latest (or `config.eval.step`)
checkpoint onto one device, whatever device or process count wrote it; the networks are
the checkpoint's (its `model` fields win over the command line's, with a logged note);
the data fields (`dataset`, `data_dir`, `load_size` for synthetic sources, ...) are the
command line's. Translates testA→B and testB→A (the directions the checkpoint's method
translates) at full size and writes

  DIR/eval/step_<N>/images/{AtoB,BtoA}/<name>_{real,fake,rec[,gt]}.png
  DIR/eval/step_<N>/index.html     the gallery: real / fake / reconstruction (/ truth)
  DIR/eval/step_<N>/metrics.json   means, per-image values, image counts
  DIR/eval/events.out.tfevents.*   the means as TensorBoard scalars at step N

With `config.eval.split='val'` the validation splits (valA, valB, valA_gt, valB_gt) are
scored instead, into DIR/eval/val_step_<N>/ and DIR/eval/val/: settings are chosen on
them, so the test splits are scored once, for the final numbers.

The outputs are written to DIR/eval/.step_<N>.partial/ and swapped in whole at the end,
so evaluating a step again replaces its earlier outputs at once (no mix of old and new
files) and an interrupted evaluation leaves the earlier one intact.

Metrics per direction (`AtoB/...`, `BtoA/...`):
  cycle_l1        mean |G_back(G(x)) − x| in [-1, 1] units (the training cycle loss / λ);
  psnr, ssim      of the translation against the ground truth, on [0, 1] images as saved
                  (8-bit), where the test split has one (synthetic sources; folders with
                  testA_gt/ and testB_gt/);
  psnr_identity,  the same for the untouched input against the ground truth: a model
  ssim_identity   that beats these has learnt something.
  grid, grid_gt,  the share of the translation's (the truth's) spectral energy at the
  checkerboard    stride-2/4 grid frequencies (`metrics.grid_energy_share`), and their
                  ratio: ~1 is the truth's texture, well above 1 a checkerboard.
  fid, kid_mean,  FID and KID of the translations against the real images of the target
  kid_std         domain (`eval.fid_reference`: its test or train split), given
                  pytorch-fid's Inception weights (`eval.inception_weights`; see fid.py).
"""

from __future__ import annotations

import html
import json
import os
import re
from typing import Any, Callable, Iterator
import urllib.parse

from absl import logging
from clu import metric_writers
from etils import epath
import jax
import ml_collections
import numpy as np

from cyclegan_jax.cli import config_checks
from cyclegan_jax.cli import console
from cyclegan_jax.cli import errors
from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.data import input_pipeline
from cyclegan_jax.deploy import inference
from cyclegan_jax.evaluation import eval_dirs
from cyclegan_jax.evaluation import fid as fid_lib
from cyclegan_jax.evaluation import metrics as metrics_lib
from cyclegan_jax.train import workdir_lock

PyTree = Any
EVAL_DIR = eval_dirs.EVAL_DIR
BATCH_SIZE = 8
# Per-image metrics, in the order they are gathered and reported.
CYCLE_KEYS = ('cycle_l1',)
GT_KEYS = ('psnr', 'ssim', 'psnr_identity', 'ssim_identity', 'grid', 'grid_gt')
_ARROW = {'AtoB': 'A → B ({}A)', 'BtoA': 'B → A ({}B)'}


def make_eval_fn(
  generator: Any,
  backward_generator: Any | None = None,
  mode: inference.TestMode = inference.DEFAULT_MODE,
  forward_fn: Callable[..., Any] | None = None,
):
  """One jitted program per batch shape: the translation, its reconstruction, metrics.

  `generator` translates, `backward_generator` (default: the same module) reconstructs;
  they differ where the domains' channels do. Args of the returned function: (forward
  params, backward params or None, real [N, H, W, C] in [-1, 1], ground truth [N, H, W,
  C'] in the target domain's channels or None, the forward and backward generators'
  batch_stats or None); generators with batch norm or dropout run in test `mode`.
  Returns {'fake', ['rec', 'cycle_l1'],
  ['psnr', 'ssim', 'psnr_identity', 'ssim_identity', 'grid', 'grid_gt']}, metrics per
  image; the identity
  scores compare the input in the target's channels (luma, or gray as RGB).
  `forward_fn` translates instead of `generator` where given (a method's own
  translation, `inference.direction_fn`).
  """

  gen = forward_fn or inference.generator_fn(generator, mode)
  gen_back = inference.generator_fn(backward_generator or generator, mode)

  @jax.jit
  def run(
    g_forward: PyTree,
    g_backward: PyTree | None,
    real: jax.Array,
    gt: jax.Array | None,
    stats_forward: PyTree | None = None,
    stats_backward: PyTree | None = None,
  ) -> dict[str, jax.Array]:
    fake = gen(g_forward, real, stats_forward)
    out = {'fake': fake}
    if g_backward is not None:
      out['rec'] = gen_back(g_backward, fake, stats_backward)
      out['cycle_l1'] = metrics_lib.l1(out['rec'], real)
    if gt is not None:
      # Scored as saved: 8-bit levels in [0, 1] (real and gt already are).
      fake01 = metrics_lib.quantize(metrics_lib.to_unit(fake))
      real01, gt01 = metrics_lib.to_unit(real), metrics_lib.to_unit(gt)
      if real01.shape[-1] != gt01.shape[-1]:
        real01 = metrics_lib.quantize(channels_lib.to_channels(real01, gt01.shape[-1]))
      out['psnr'] = metrics_lib.psnr(fake01, gt01)
      out['ssim'] = metrics_lib.ssim(fake01, gt01)
      out['psnr_identity'] = metrics_lib.psnr(real01, gt01)
      out['ssim_identity'] = metrics_lib.ssim(real01, gt01)
      out['grid'] = metrics_lib.grid_energy_share(fake01)
      out['grid_gt'] = metrics_lib.grid_energy_share(gt01)
    return out

  return run


def _safe_name(name: str, index: int, taken: set[str]) -> str:
  """A file stem made of safe characters, unique within a direction."""
  stem = re.sub(r'[^A-Za-z0-9_.-]', '_', name).lstrip('.') or f'image_{index:05d}'
  unique, n = stem, 1
  while unique in taken:
    unique, n = f'{stem}_{n}', n + 1
  taken.add(unique)
  return unique


def _examples(ds) -> Iterator[dict[str, Any]]:
  for ex in ds.as_numpy_iterator():
    item = {'image': ex['image'][0], 'name': ex['name'][0].decode('utf-8', 'replace')}
    if 'gt' in ex:
      item['gt'] = ex['gt'][0]
    yield item


def _run_direction(
  run,
  g_forward: PyTree,
  g_backward: PyTree | None,
  ds,
  image_dir: str,
  batch_size: int,
  on_fake: Callable[[np.ndarray], None] | None = None,
  label: str = '',
  stats: tuple[PyTree | None, PyTree | None] = (None, None),
) -> tuple[list[str], dict[str, list[float]]]:
  """Translates one test split; writes its PNGs; returns names and per-image metrics.

  `on_fake`, if given, receives each translation as saved (uint8 [H, W, 3]). A progress
  bar labelled `label` counts the images on stderr (process 0 only). `stats` are the
  forward and backward generators' batch_stats (None: none).
  """
  inference.makedirs(image_dir)
  names: list[str] = []
  values: dict[str, list[float]] = {}
  taken: set[str] = set()
  count = int(ds.cardinality())  # Negative when tf.data cannot tell.
  bar = console.ProgressBar(
    count if count >= 0 else None, label, enabled=jax.process_index() == 0
  )
  for group in inference.batches_by_shape(
    _examples(ds), lambda e: e['image'].shape, batch_size
  ):
    size = inference.bucket_size(len(group), batch_size)
    real = inference.padded_batch([e['image'] for e in group], size)
    gt = (
      inference.padded_batch([e['gt'] for e in group], size) if 'gt' in group[0] else None
    )
    out = jax.device_get(run(g_forward, g_backward, real, gt, *stats))
    pictures = {'real': real, 'fake': out['fake'], 'rec': out.get('rec'), 'gt': gt}
    for i, example in enumerate(group):
      name = _safe_name(example['name'], len(names), taken)
      names.append(name)
      for kind, batch in pictures.items():
        if batch is not None:
          inference.save_png(
            os.path.join(image_dir, f'{name}_{kind}.png'), inference.to_uint8(batch[i])
          )
      for key in CYCLE_KEYS + GT_KEYS:
        if key in out:
          values.setdefault(key, []).append(float(out[key][i]))
      if on_fake is not None:
        on_fake(inference.to_uint8(out['fake'][i]))
    bar.advance(len(group))
  bar.close()
  return names, values


def _gather_across_processes(
  names: list[str],
  values: dict[str, list[float]],
) -> tuple[list[str], dict[str, list[float]]]:
  """Every process's rows, in process order (each evaluated a contiguous part)."""
  if jax.process_count() == 1:
    return names, values
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

  keys = sorted(values)
  count = int(np.max(multihost_utils.process_allgather(np.array([len(names)]))))
  local = encode_rows(names, values, keys, count)
  gathered = multihost_utils.process_allgather(local)
  parts = [
    {k: np.asarray(v[p]) for k, v in gathered.items()} for p in range(jax.process_count())
  ]
  return decode_rows(parts, keys)


def encode_rows(
  names: list[str],
  values: dict[str, list[float]],
  keys: list[str],
  count: int,
  name_bytes: int = 256,
) -> dict[str, np.ndarray]:
  """Fixed-shape arrays of one process's rows, padded to `count` (for an allgather)."""
  encoded = np.zeros((count, name_bytes), np.uint8)
  for i, name in enumerate(names):
    raw = name.encode('utf-8')[:name_bytes]
    encoded[i, : len(raw)] = np.frombuffer(raw, np.uint8)
  table = np.zeros((count, len(keys)), np.float64)
  for j, key in enumerate(keys):
    table[: len(names), j] = values[key]
  return {'names': encoded, 'values': table, 'count': np.array(len(names))}


def decode_rows(
  parts: list[dict[str, np.ndarray]],
  keys: list[str],
) -> tuple[list[str], dict[str, list[float]]]:
  """The inverse of `encode_rows` over every process's part, concatenated in order."""
  names: list[str] = []
  values: dict[str, list[float]] = {k: [] for k in keys}
  for part in parts:
    n = int(part['count'])
    names += [
      bytes(row).rstrip(b'\0').decode('utf-8', 'replace') for row in part['names'][:n]
    ]
    for j, key in enumerate(keys):
      values[key] += [float(v) for v in part['values'][:n, j]]
  return names, values


def _img(rel_dir: str, name: str, kind: str) -> str:
  src = html.escape(f'{rel_dir}/{urllib.parse.quote(name)}_{kind}.png', quote=True)
  return f'<a href="{src}"><img src="{src}" width="256" alt="{kind}"></a>'


def gallery_html(
  step: int,
  workdir: str,
  dataset: str,
  results: dict[str, dict[str, Any]],
  summary: dict[str, float],
  test_mode: str = '',
  split: str = 'test',
) -> str:
  """The results page: per direction, one row per image of real / fake / rec (/ gt);
  `test_mode` the line that says how batch norm and dropout ran ('' for neither)."""
  lines = [
    '<!DOCTYPE html>',
    '<html><head><meta charset="utf-8">',
    f'<title>CycleGAN evaluation, step {step}</title>',
    '<style>body{font-family:sans-serif} td{text-align:center;vertical-align:top;'
    'padding:4px} img{image-rendering:pixelated} th{padding:4px}</style>',
    '</head><body>',
    f'<h1>Step {step}, {html.escape(split)} split</h1>',
    f'<p>{html.escape(inference.display_path(workdir))} &middot; {html.escape(dataset)}</p>',
    *([f'<p>Test mode: {html.escape(test_mode)}</p>'] if test_mode else []),
    '<table border="1"><tr><th>metric</th><th>value</th></tr>',
  ]
  lines += [
    f'<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>' for k, v in summary.items()
  ]
  lines.append('</table>')
  for direction, result in results.items():
    kinds = [k for k in ('real', 'fake', 'rec', 'gt') if k in result['kinds']]
    captions = {
      'real': 'real',
      'fake': 'fake (translated)',
      'rec': 'rec (cycled back)',
      'gt': 'ground truth',
    }
    lines.append(f'<h2>{html.escape(_ARROW[direction].format(split))}</h2>')
    lines.append(
      '<table><tr><th>image</th>'
      + ''.join(f'<th>{captions[k]}</th>' for k in kinds)
      + '</tr>'
    )
    rel_dir = f'images/{direction}'
    for i, name in enumerate(result['names']):
      scores = ' '.join(
        f'{k} {result["values"][k][i]:.3f}'
        for k in ('psnr', 'ssim')
        if k in result['values']
      )
      lines.append(
        f'<tr><td>{html.escape(name)}<br><small>{scores}</small></td>'
        + ''.join(f'<td>{_img(rel_dir, name, k)}</td>' for k in kinds)
        + '</tr>'
      )
    lines.append('</table>')
  lines.append('</body></html>')
  return '\n'.join(lines) + '\n'


def _summarise(results: dict[str, dict[str, Any]]) -> dict[str, float]:
  summary = {}
  for direction, result in results.items():
    for key in CYCLE_KEYS + GT_KEYS:
      if result['values'].get(key):
        summary[f'{direction}/{key}'] = float(np.mean(result['values'][key]))
    if f'{direction}/grid_gt' in summary:
      summary[f'{direction}/checkerboard'] = summary[f'{direction}/grid'] / max(
        summary[f'{direction}/grid_gt'], 1e-12
      )
  return summary


def evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, batch_size: int = BATCH_SIZE
) -> dict[str, float]:
  """The mean metrics of `evaluate_checkpoint` (which see)."""
  return evaluate_checkpoint(config, workdir, batch_size=batch_size)[1]


def evaluate_checkpoint(
  config: ml_collections.ConfigDict, workdir: str, *, batch_size: int = BATCH_SIZE
) -> tuple[int, dict[str, float]]:
  """Evaluates checkpoint `config.eval.step` (-1: latest) of `workdir` on the test splits.

  Args:
    config: the command line's config: its data fields say what to evaluate on, its
      `eval` fields which checkpoint and how many images; the networks come from the
      checkpoint.
    workdir: a training workdir or one written by `cyclegan_jax.deploy.convert`.
    batch_size: images of one size translated together.

  Returns:
    The step evaluated and the mean metrics, e.g. {'AtoB/psnr': ...,
    'AtoB/psnr_identity': ..., 'BtoA/cycle_l1': ...}, the same on every process.

  Raises:
    FileNotFoundError: no checkpoint in `workdir`, or no checkpoint `config.eval.step`.
    checkpoints.DamagedCheckpointError: that step's generators cannot be read.
    inference.ArchitectureMismatchError: the parameters do not fit the checkpoint config.
    ValueError: a bad config field, or an eval folder that cannot be written.
    workdir_lock.WorkdirInUseError: another evaluation of `workdir` is running.
  """
  config_checks.validate(config)
  # A training may run beside it (it never writes into eval/); a second evaluation not.
  with workdir_lock.hold(
    workdir, 'evaluation', name=workdir_lock.EVAL_LOCK_NAME, missing_ok=True
  ):
    return _evaluate(config, workdir, batch_size=batch_size)


def _evaluate(
  config: ml_collections.ConfigDict, workdir: str, *, batch_size: int
) -> tuple[int, dict[str, float]]:
  """`evaluate_checkpoint` once the workdir's evaluation lock is held."""
  input_pipeline.check_eval_split(config)  # Before minutes of restoring.
  split = input_pipeline.eval_split(config)
  restored = inference.restore(
    workdir,
    config.eval.step,
    requested_model=config.model,
    step_flag='--config.eval.step',
    weights=config.eval.weights if 'weights' in config.eval else 'auto',
  )
  eval_root = os.path.join(workdir, EVAL_DIR)
  out_dir = os.path.join(eval_root, eval_dirs.name(restored.step, split))
  # Written aside and swapped in whole at the end (see the module docstring).
  work_dir = os.path.join(eval_root, f'.{eval_dirs.name(restored.step, split)}.partial')
  if jax.process_index() == 0:
    errors.check_writable_folder(eval_root, 'The evaluation folder')
    _remove(work_dir)  # A stale one from an interrupted evaluation.
  _sync('cyclegan_jax: eval folder ready')
  mode = inference.TestMode(model_eval=config.eval.model_eval, seed=config.seed)
  runs = _eval_fns(restored, mode, config)
  fid_eval = fid_lib.EvalFID.from_config(config)  # None without Inception weights.
  results: dict[str, dict[str, Any]] = {}
  no_images: list[str] = []
  for direction, (forward, backward) in restored.method.directions.items():
    if forward not in restored.params:
      logging.warning(
        'Skipping %s: %s',
        direction,
        inference.missing_generator_message(restored, forward, direction),
      )
      continue
    g_backward = restored.params.get(backward) if backward else None
    if backward and g_backward is None:
      logging.warning(
        '%s: no %s in the checkpoint, so no reconstructions or cycle L1.',
        direction,
        backward,
      )
    try:
      ds = input_pipeline.create_eval_dataset(
        config,
        direction[0],
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        max_images=config.eval.max_images,
      )
    except (FileNotFoundError, ValueError) as e:  # No test image in this domain.
      logging.warning('Skipping %s: %s', direction, e)
      no_images.append(str(e))
      continue
    has_gt = 'gt' in ds.element_spec
    names, values = _run_direction(
      runs[direction],
      restored.params[forward],
      g_backward,
      ds,
      os.path.join(work_dir, 'images', direction),
      batch_size,
      on_fake=fid_eval.collector(direction) if fid_eval else None,
      label=direction,
      stats=(
        restored.stats_for(forward) or None,
        (restored.stats_for(backward) or None) if backward else None,
      ),
    )
    names, values = _gather_across_processes(names, values)
    kinds = (
      ['real', 'fake']
      + (['rec'] if g_backward is not None else [])
      + (['gt'] if has_gt else [])
    )
    results[direction] = {'names': names, 'values': values, 'kinds': kinds}
    logging.info(
      '%s: %d images%s.',
      direction,
      len(names),
      '' if has_gt else ' (no ground truth: no PSNR/SSIM)',
    )
  if not results and no_images:
    raise ValueError(f'Nothing to evaluate: {no_images[0]}')
  if not results:
    raise ValueError(f'The checkpoint in {workdir} holds no generator to evaluate.')
  summary = _summarise(results)
  if fid_eval:
    summary.update(fid_eval.metrics(config))
  for key, value in summary.items():
    logging.info('step %d %s = %.4f', restored.step, key, value)

  if jax.process_index() == 0:
    _write_outputs(work_dir, workdir, config, restored, results, summary, mode)
    _swap_in(work_dir, out_dir)
    logging.info(
      'Wrote the %s evaluation of step %d to %s (open index.html).',
      split,
      restored.step,
      out_dir,
    )
  return restored.step, summary


def _eval_fns(
  restored: inference.Restored,
  mode: inference.TestMode,
  config: ml_collections.ConfigDict | None = None,
) -> dict[str, Callable[..., Any]]:
  """The eval program of each direction: one shared where the directions' generator
  modules are the same objects (CycleGAN with equal channels in both domains); a
  method's own translation (`translate_fn`, its settings from `config`) one each."""
  runs: dict[tuple[int, int], Callable[..., Any]] = {}
  out = {}
  method = restored.method
  for direction, (forward, backward) in method.directions.items():
    if method.translate_fn is not None:
      translate = inference.direction_fn(
        method, restored.modules, direction, mode, config
      )
      out[direction] = make_eval_fn(None, None, mode, forward_fn=translate)
      continue
    modules = (restored.modules[forward], restored.modules[backward or forward])
    key = tuple(id(m) for m in modules)
    if key not in runs:
      runs[key] = make_eval_fn(*modules, mode)
    out[direction] = runs[key]
  return out


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    multihost_utils.sync_global_devices(name)


def _remove(path: str) -> None:
  target = epath.Path(path)
  if target.exists():
    target.rmtree()


def _swap_in(new_dir: str, out_dir: str) -> None:
  """Replaces `out_dir` (an earlier evaluation of the step, if any) by `new_dir`."""
  old = epath.Path(out_dir)
  retired = epath.Path(f'{out_dir}.replaced')
  if old.exists():
    _remove(str(retired))
    old.rename(retired)
  epath.Path(new_dir).rename(old)
  _remove(str(retired))


def stateful(restored: inference.Restored) -> bool:
  """Whether any restored generator has batch norm or dropout (two test modes; a
  method's own translation, `translate_fn`, picks its one way itself)."""
  if restored.method.translate_fn is not None:
    return False
  return any(
    inference.is_stateful(restored.modules[k], restored.stats_for(k))
    for k in restored.params
  )


def test_mode_record(
  restored: inference.Restored, mode: inference.TestMode
) -> dict[str, Any]:
  """The test mode as metrics.json records it."""
  del restored
  return {'model_eval': mode.model_eval, 'seed': mode.seed, 'line': mode.describe()}


def _write_outputs(
  out_dir: str,
  workdir: str,
  config: ml_collections.ConfigDict,
  restored: inference.Restored,
  results: dict[str, dict[str, Any]],
  summary: dict[str, float],
  mode: inference.TestMode = inference.DEFAULT_MODE,
) -> None:
  inference.makedirs(out_dir)
  split = input_pipeline.eval_split(config)
  report = {
    'step': restored.step,
    'split': split,
    'weights': restored.weights,
    **({'test_mode': test_mode_record(restored, mode)} if stateful(restored) else {}),
    'workdir': inference.display_path(workdir),
    'dataset': config.dataset,
    'model': restored.model_config.to_dict(),
    'num_images': {d: len(r['names']) for d, r in results.items()},
    'metrics': summary,
    'per_image': {
      d: {
        name: {k: v[i] for k, v in r['values'].items()}
        for i, name in enumerate(r['names'])
      }
      for d, r in results.items()
    },
  }
  out = epath.Path(out_dir)
  (out / 'metrics.json').write_text(json.dumps(report, indent=1))
  (out / 'index.html').write_text(
    gallery_html(
      restored.step,
      workdir,
      config.dataset,
      results,
      summary,
      test_mode_record(restored, mode)['line'] if stateful(restored) else '',
      split,
    ),
    encoding='utf-8',
  )
  # The validation scalars get their own run in TensorBoard.
  scalars_dir = os.path.join(workdir, EVAL_DIR, *(() if split == 'test' else (split,)))
  writer = metric_writers.create_default_writer(scalars_dir)
  with metric_writers.ensure_flushes(writer):
    writer.write_scalars(restored.step, summary)
