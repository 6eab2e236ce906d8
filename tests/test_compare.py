"""The method comparison: rows, the plan of runs, the tables, the runner and resuming."""

import json
import math
import os
import subprocess
import sys

import pytest

from configs import compare as compare_config
from configs import tiny
from cyclegan_jax import methods
from cyclegan_jax.evaluation import fcn_score
from cyclegan_jax.studies import ablation
from cyclegan_jax.studies import compare
from cyclegan_jax.studies import compare_tables

SEGMENTER = fcn_score.Settings(size=16, width=4, depth=2, steps=3, batch_size=4)


def tiny_base():
  """The comparison's base at the tests' size: 16 px streets, tiny nets, 2 steps."""
  config = tiny.shrink(compare_config.get_config())
  config.load_size = 16  # Streets are drawn at this size.
  config.model.netG = 'resnet_6blocks'
  config.eval.max_images = 4
  return config


def read_md_table(path, heading):
  """The header and rows of the Markdown table under `heading`."""
  lines = open(path, encoding='utf-8').read().splitlines()
  start = lines.index(heading) + 2
  table = []
  for line in lines[start:]:
    if not line.startswith('|'):
      break
    table.append([c.strip() for c in line.strip().strip('|').split('|')])
  return table[0], table[2:]


# --------------------------------------------------------------------------------------
# Rows and the plan
# --------------------------------------------------------------------------------------


def test_rows_are_in_the_papers_order_and_parse():
  assert list(compare.ROWS)[:6] == [
    'cogan',
    'bigan',
    'simgan',
    'feature_gan',
    'cycle_gan',
    'pix2pix',
  ]
  assert set(compare.ROWS) >= {'cycle_alone', 'gan_alone', 'gan_forward', 'gan_backward'}
  assert compare.parse_rows(['pix2pix', 'cycle_gan']) == ['cycle_gan', 'pix2pix']
  with pytest.raises(
    ValueError, match="Unknown comparison row 'cyclegan2'; valid: cogan"
  ):
    compare.parse_rows(['cycle_gan', 'cyclegan2'])
  assert compare.parse_seeds(['2', '0', '2']) == [2, 0]
  with pytest.raises(ValueError, match='not an integer'):
    compare.parse_seeds(['x'])


def test_row_configs_set_their_methods_fields():
  base = compare_config.get_config()
  p2p = compare.row_config(base, 'pix2pix', 3, 'BtoA')
  assert (p2p.method, p2p.dataset_mode, p2p.direction, p2p.seed) == (
    'pix2pix',
    'aligned',
    'BtoA',
    3,
  )
  assert (p2p.model.norm_D, p2p.loss.gan_mode, p2p.pool_size) == ('batch', 'vanilla', 0)
  # 32 px cannot hold pix2pix's U-Net: the base's generator stays, as it is built.
  assert (p2p.model.netG, p2p.model.norm, p2p.model.use_dropout) == (
    base.model.netG,
    'instance',
    False,
  )
  big = base.copy_and_resolve_references()
  big.crop_size = big.load_size = 128
  unet = compare.row_config(big, 'pix2pix', 0, 'AtoB')
  assert (unet.model.netG, unet.model.norm, unet.model.use_dropout) == (
    'unet_128',
    'batch',
    True,
  )
  assert compare.pix2pix_generator(128, 'resnet_6blocks') == 'unet_128'
  assert compare.pix2pix_generator(512, 'resnet_6blocks') == 'unet_256'
  forward = compare.row_config(base, 'gan_forward', 0)
  assert (forward.method, forward.loss.lambda_A, forward.loss.lambda_B) == (
    'cycle_gan',
    10.0,
    0.0,
  )
  assert base.method == 'cycle_gan' and base.loss.lambda_B == 10.0  # A copy changed.
  with pytest.raises(AttributeError):
    base.not_a_field = 1  # Still locked.


def test_plan_runs_one_way_methods_once_per_direction(monkeypatch):
  monkeypatch.delenv(compare.VGG_ENV, raising=False)
  # feature_gan is registered (as after the baselines merge) but has no VGG weights;
  # 'ghost' names a method this build does not have.
  monkeypatch.setitem(methods.METHODS, 'feature_gan', 'not.imported')
  monkeypatch.setitem(
    compare.ROWS, 'ghost', compare.Row('Ghost', 'ghost_gan', compare._cycle_gan)
  )
  the_plan = compare.plan(
    tiny_base(), ['cycle_gan', 'pix2pix', 'feature_gan', 'ghost'], [0, 1]
  )
  assert [r.name for r in the_plan.runs] == [
    os.path.join('cycle_gan', 'seed_0'),
    os.path.join('pix2pix', 'AtoB', 'seed_0'),
    os.path.join('pix2pix', 'BtoA', 'seed_0'),
    os.path.join('cycle_gan', 'seed_1'),
    os.path.join('pix2pix', 'AtoB', 'seed_1'),
    os.path.join('pix2pix', 'BtoA', 'seed_1'),
  ]
  assert 'no VGG-16 weights' in the_plan.skipped['feature_gan']
  assert the_plan.skipped['ghost'] == "not run: no method 'ghost_gan' in this build"
  assert the_plan.missing == {}


def test_one_way_baselines_train_a_model_per_direction():
  the_plan = compare.plan(tiny_base(), ['simgan'], [0])
  assert [r.name for r in the_plan.runs] == [
    os.path.join('simgan', 'AtoB', 'seed_0'),
    os.path.join('simgan', 'BtoA', 'seed_0'),
  ]
  assert [r.config.direction for r in the_plan.runs] == ['AtoB', 'BtoA']
  assert the_plan.missing == {}


def test_plan_says_which_direction_a_one_way_method_cannot_train(monkeypatch):
  # A method that ignored config.direction would translate one way whatever it is asked.
  p2p = methods.get('pix2pix')
  fixed = p2p.configure({'direction': 'AtoB'})
  monkeypatch.setattr(type(p2p), 'configure', lambda self, config: fixed)
  the_plan = compare.plan(tiny_base(), ['pix2pix'], [0])
  assert [r.direction for r in the_plan.runs] == ['AtoB']
  assert the_plan.missing == {'pix2pix': {'BtoA': 'pix2pix translates AtoB only'}}


def test_a_bad_row_config_is_refused_before_anything_trains(tmp_path, monkeypatch):
  def broken(config):
    config.loss.gan_mode = 'hinge'

  monkeypatch.setitem(compare.ROWS, 'broken', compare.Row('Broken', 'cycle_gan', broken))

  def must_not_run(*args):
    raise AssertionError('trained before every config was checked')

  with pytest.raises(ValueError, match='Row broken: .*gan_mode'):
    compare.run_compare(
      tiny_base(),
      str(tmp_path),
      ['cycle_gan', 'broken'],
      segmenter=SEGMENTER,
      train_fn=must_not_run,
      evaluate_fn=must_not_run,
    )
  assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------------------
# The tables (from made-up results)
# --------------------------------------------------------------------------------------


def fake_result(row, seed, direction, scores, psnr):
  metrics = {}
  for d in [direction] if direction else ['AtoB', 'BtoA']:
    metrics[f'{d}/psnr'] = psnr
    metrics[f'{d}/ssim'] = psnr / 100
  return {
    'row': row,
    'seed': seed,
    'direction': direction,
    'steps': 2,
    'wall_s': 10.0,
    'metrics': metrics,
    'scores': scores,
  }


def three(iou):
  return {'pixel_acc': iou + 0.5, 'class_acc': iou + 0.1, 'class_iou': iou}


def test_tables_merge_one_way_runs_and_average_over_seeds(tmp_path):
  results = [
    fake_result('cycle_gan', 0, None, {'photo_to_labels': three(0.2)}, 10.0),
    fake_result('cycle_gan', 1, None, {'photo_to_labels': three(0.4)}, 12.0),
    fake_result('pix2pix', 0, 'AtoB', {'photo_to_labels': three(0.5)}, 20.0),
    fake_result('pix2pix', 0, 'BtoA', {'labels_to_photo': three(0.6)}, 18.0),
  ]
  rows = {'cycle_gan': ('CycleGAN', 'cycle_gan'), 'pix2pix': ('pix2pix', 'pix2pix')}
  rows['feature_gan'] = ('Feature loss + GAN', 'feature_gan')
  tables = compare_tables.build(
    rows,
    [0, 1],
    results,
    skipped={'feature_gan': 'not run: no VGG-16 weights'},
    missing={},
    ceiling=three(0.7),
    fid=False,
  )
  cg, p2p, feat = tables.summary['rows']
  assert cg['table3']['class_iou']['mean'] == pytest.approx(0.3)
  assert cg['table3']['class_iou']['sd'] == pytest.approx(math.sqrt(0.02))
  assert cg['table2']['class_iou'] is None
  assert p2p['table1']['AtoB/psnr']['mean'] == 20.0
  assert p2p['table1']['BtoA/psnr']['mean'] == 18.0
  assert p2p['table2']['class_iou'] == {'mean': 0.6, 'sd': None, 'n': 1}
  assert p2p['wall_s']['mean'] == 20.0  # Both directions' runs of the seed.
  assert feat['not_run'] and feat['seeds'] == []

  config = tiny_base()
  compare_tables.write(
    str(tmp_path), tables, base=config, command='cmd', segmenter='seg-1', runs=results
  )
  path = os.path.join(tmp_path, compare_tables.TABLE_MD)
  header, lines = read_md_table(path, '## Table 3: photo → labels (A→B)')
  assert header[:6] == [
    'row',
    'paper row',
    'seeds',
    'per-pixel acc.',
    'per-class acc.',
    'class IoU',
  ]
  assert lines[0][:6] == [
    '`cycle_gan`',
    'CycleGAN',
    '2',
    '0.800 ± 0.141',
    '0.400 ± 0.141',
    '0.300 ± 0.141',
  ]
  assert lines[0][6] == '0.16'  # The paper's Cityscapes class IoU, Table 3.
  assert lines[1][5:7] == ['0.500', '0.32']
  assert lines[2][3:] == ['–', '–', '–', '0.06', 'not run: no VGG-16 weights']
  _, table2 = read_md_table(path, '## Table 2: labels → photo (B→A), FCN-score')
  assert table2[0][:6] == [
    '*real photos*',
    'Ground truth',
    '–',
    '1.200',
    '0.800',
    '0.700',
  ]
  assert [line[6] for line in table2] == ['–', '0.11', '0.18', '0.01']
  text = open(path, encoding='utf-8').read()
  assert 'By class IoU: pix2pix (0.500) > CycleGAN (0.300).' in text
  assert '*input unchanged*' not in text  # No run has evaluated: no input row yet.

  inputs = {'table1': {'AtoB/psnr': 9.5, 'AtoB/ssim': 0.25}, 'table3': three(0.1)}
  tables = compare_tables.build(
    rows, [0, 1], results, skipped={}, missing={}, ceiling=None, fid=False, inputs=inputs
  )
  compare_tables.write(
    str(tmp_path), tables, base=config, command='cmd', segmenter='seg-1', runs=results
  )
  _, table1 = read_md_table(path, '## Table 1: realism')
  assert table1[0][:7] == [
    '*input unchanged*',
    'Identity',
    '–',
    '9.50',
    '0.250',
    '–',
    '–',
  ]
  _, table3 = read_md_table(path, '## Table 3: photo → labels (A→B)')
  assert table3[0][:6] == [
    '*input unchanged*',
    'Identity',
    '–',
    '0.600',
    '0.200',
    '0.100',
  ]
  _, table2 = read_md_table(path, '## Table 2: labels → photo (B→A), FCN-score')
  assert table2[0][0] == '`cycle_gan`'  # Neither ceiling nor inputs for Table 2 yet.
  assert 'FID/KID: not run: no Inception weights' in text
  summary = json.load(open(os.path.join(tmp_path, compare_tables.TABLE_JSON)))
  assert summary['command'] == 'cmd' and summary['segmenter'] == 'seg-1'
  assert [r['row'] for r in summary['rows']] == ['cycle_gan', 'pix2pix', 'feature_gan']


# --------------------------------------------------------------------------------------
# The runner, end to end
# --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_runner_trains_scores_tabulates_and_resumes(tmp_path, monkeypatch):
  monkeypatch.delenv(compare.VGG_ENV, raising=False)
  monkeypatch.delenv(compare.INCEPTION_ENV, raising=False)
  monkeypatch.setitem(methods.METHODS, 'feature_gan', 'not.imported')
  workdir, cache = str(tmp_path / 'runs'), str(tmp_path / 'cache')
  rows = ['pix2pix', 'cycle_gan', 'feature_gan']
  tables = compare.run_compare(
    tiny_base(), workdir, rows, [0], command='test', segmenter=SEGMENTER, cache_dir=cache
  )
  assert sorted(r['row'] + str(r['direction']) for r in tables.runs) == [
    'cycle_ganNone',
    'pix2pixAtoB',
    'pix2pixBtoA',
  ]
  md = os.path.join(workdir, 'compare.md')
  header, table1 = read_md_table(md, '## Table 1: realism')
  assert header[3:7] == ['A→B PSNR', 'A→B SSIM', 'B→A PSNR', 'B→A SSIM']
  assert [r[0] for r in table1] == [
    '*input unchanged*',
    '`feature_gan`',
    '`cycle_gan`',
    '`pix2pix`',
  ]
  for line in table1[2:]:
    assert line[2] == '1'
    assert all(math.isfinite(float(c)) for c in line[3:7])
  assert 'no VGG-16 weights' in table1[1][-1]
  cycle = next(r for r in tables.runs if r['row'] == 'cycle_gan')
  assert table1[0][3:7] == [
    f'{cycle["metrics"]["AtoB/psnr_identity"]:.2f}',
    f'{cycle["metrics"]["AtoB/ssim_identity"]:.3f}',
    f'{cycle["metrics"]["BtoA/psnr_identity"]:.2f}',
    f'{cycle["metrics"]["BtoA/ssim_identity"]:.3f}',
  ]
  for heading in (
    '## Table 2: labels → photo (B→A), FCN-score',
    '## Table 3: photo → labels (A→B)',
  ):
    _, lines = read_md_table(md, heading)
    scored = [
      line
      for line in lines
      if line[0] in ('`cycle_gan`', '`pix2pix`', '*input unchanged*')
    ]
    assert len(scored) == 3
    for line in scored:
      assert all(0.0 <= float(c) <= 1.0 for c in line[3:6])
  summary = json.load(open(os.path.join(workdir, 'compare.json')))
  assert summary['ceiling']['class_iou'] >= 0.0
  assert summary['segmenter'] == fcn_score.cache_key('synthetic:streets', SEGMENTER)
  by_row = {r['row']: r for r in summary['rows']}
  assert by_row['pix2pix']['table2']['class_iou']['n'] == 1
  assert by_row['pix2pix']['table3']['class_iou']['n'] == 1
  saved = json.load(
    open(os.path.join(workdir, 'pix2pix', 'BtoA', 'seed_0', 'compare_result.json'))
  )
  assert saved['scores'].keys() == {'labels_to_photo'}
  assert set(saved['scores']['labels_to_photo']['per_class_iou']) >= {'road', 'car'}

  def must_not_run(*args):
    raise AssertionError(f'a finished run ran again: {args[1]}')

  again = compare.run_compare(
    tiny_base(),
    workdir,
    rows,
    [0],
    command='test',
    segmenter=SEGMENTER,
    cache_dir=cache,
    train_fn=must_not_run,
    evaluate_fn=must_not_run,
  )
  assert again.summary == tables.summary

  changed = tiny_base()
  changed.num_train_steps = 3
  with pytest.raises(ValueError, match='differs in num_train_steps'):
    compare.run_compare(
      changed,
      workdir,
      ['cycle_gan'],
      [0],
      segmenter=SEGMENTER,
      cache_dir=cache,
      train_fn=must_not_run,
      evaluate_fn=must_not_run,
    )


@pytest.mark.slow
def test_cli_refuses_unknown_rows_and_a_base_without_the_full_objective(tmp_path):
  def run(*args):
    return subprocess.run(
      [
        sys.executable,
        '-m',
        'cyclegan_jax.studies.compare',
        f'--workdir={tmp_path}',
        *args,
      ],
      capture_output=True,
      text=True,
      timeout=300,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
    )

  unknown = run('--methods=cycle_gan,cyclegan')
  assert unknown.returncode != 0
  assert "Unknown comparison row 'cyclegan'; valid: cogan" in unknown.stderr
  no_cycle = run('--methods=cycle_gan', '--config.loss.lambda_A=0')
  assert no_cycle.returncode != 0 and 'full objective' in no_cycle.stderr
  assert not os.listdir(tmp_path)


def test_ablation_rows_are_the_ablation_variants():
  assert {
    n for n, r in compare.ROWS.items() if r.label in ablation.PAPER_ROWS.values()
  } == (set(ablation.VARIANTS) - {'cyclegan'}) | {'cycle_gan'}
