"""The ablation: each switch removes exactly its loss terms; the row configs; the runner."""

import dataclasses
import json
import os
import subprocess
import sys
import time
import types

from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np
import pytest

from configs import ablation as ablation_config
from configs import tiny
from cyclegan_jax.methods import cycle_gan
from cyclegan_jax.nets import models
from cyclegan_jax.studies import ablation
from cyclegan_jax.train import step as step_lib

IMAGE = (16, 16, 3)
GAN_TERMS = ('loss_G_A', 'loss_G_B')
TERMS = GAN_TERMS + ('loss_cycle_A', 'loss_cycle_B', 'loss_idt_A', 'loss_idt_B')


def tiny_networks(config):
  """`config`'s losses with networks small enough for 16 px images (plain layers)."""
  networks = step_lib.create_networks(config, epoch_length=10)
  return dataclasses.replace(
    networks,
    generator=models.ResnetGenerator(ngf=4, num_blocks=1, conv_impl='xla'),
    discriminator=models.PatchDiscriminator(ndf=4, num_layers=2),
  )


def with_loss(config, **weights):
  for key, value in weights.items():
    config.loss[key] = value
  return config


@pytest.fixture(scope='module')
def setup():
  """Generator params, two different critics' params and a batch (shared by the tests)."""
  networks = tiny_networks(ablation_config.get_config())
  # 'rbg' keys: eager threefry draws compile slowly.
  params = cycle_gan.init_params(networks, jax.random.key(0, impl='rbg'), IMAGE)
  other = cycle_gan.init_params(networks, jax.random.key(1, impl='rbg'), IMAGE)
  rng = np.random.default_rng(0)
  a, b = (rng.uniform(-1, 1, (2, *IMAGE)).astype(np.float32) for _ in 'AB')
  g = {k: params[k] for k in cycle_gan.GENERATORS}
  d = {k: params[k] for k in cycle_gan.DISCRIMINATORS}
  d_other = {k: other[k] for k in cycle_gan.DISCRIMINATORS}
  return g, d, d_other, a, b


def total_grad(networks, g, d, a, b):
  # Eager: at this size compiling costs more than it saves.
  return jax.grad(lambda p: cycle_gan.generator_losses(p, d, a, b, networks=networks)[0])(
    g
  )


@pytest.fixture(scope='module')
def per_term(setup):
  """The gradient of each term of the full objective (with identity) on its own."""
  g, d, _, a, b = setup
  networks = tiny_networks(with_loss(ablation_config.get_config(), lambda_identity=0.5))
  term = lambda name: jax.grad(
    lambda p: cycle_gan.generator_losses(p, d, a, b, networks=networks)[1][0][name]
  )(g)
  return {name: term(name) for name in TERMS}


def assert_trees_close(x, y, scale, what):
  for (path, u), v in zip(jax.tree_util.tree_leaves_with_path(x), jax.tree.leaves(y)):
    np.testing.assert_allclose(
      u, v, rtol=1e-4, atol=1e-5 * scale, err_msg=f'{what}: {jax.tree_util.keystr(path)}'
    )


def norm(tree):
  return float(np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(tree))))


def tree_sum(trees):
  return jax.tree.map(lambda *xs: sum(xs), *trees)


@pytest.mark.parametrize('variant', list(ablation.VARIANTS))
def test_each_row_is_the_sum_of_exactly_its_kept_terms(setup, per_term, variant):
  """grad(row's total) = Σ grad(kept terms of the full objective); the rest have weight."""
  g, d, _, a, b = setup
  config = ablation_config.get_config(variant)
  kept = [t for t in GAN_TERMS if config.loss.lambda_gan]
  kept += ['loss_cycle_A'] * bool(config.loss.lambda_A)
  kept += ['loss_cycle_B'] * bool(config.loss.lambda_B)
  removed = [t for t in TERMS if t not in kept]

  got = total_grad(tiny_networks(config), g, d, a, b)
  scale = max(norm(per_term[t]) for t in TERMS)
  assert_trees_close(got, tree_sum([per_term[t] for t in kept]), scale, variant)
  # The removed terms would have moved the parameters, so the check above can fail.
  for term in removed:
    assert norm(per_term[term]) > 1e-2 * scale, term


def test_forward_cycle_off_leaves_the_gradient_of_everything_else(setup, per_term):
  """λ_A = 0: the gradient is the full one minus the forward cycle term's, exactly that."""
  g, d, _, a, b = setup
  full = total_grad(tiny_networks(ablation_config.get_config()), g, d, a, b)
  off = total_grad(
    tiny_networks(with_loss(ablation_config.get_config(), lambda_A=0.0)), g, d, a, b
  )
  expected = jax.tree.map(lambda f, c: f - c, full, per_term['loss_cycle_A'])
  assert_trees_close(off, expected, norm(full), 'lambda_A = 0')
  assert norm(jax.tree.map(lambda x, y: x - y, off, full)) > 1e-2 * norm(full)


@pytest.mark.parametrize('lambda_gan, independent', [(0.0, True), (1.0, False)])
def test_without_the_adversarial_terms_the_critics_do_not_matter(
  setup, lambda_gan, independent
):
  g, d, d_other, a, b = setup
  networks = tiny_networks(with_loss(ablation_config.get_config(), lambda_gan=lambda_gan))
  with_d, with_other = (total_grad(networks, g, dp, a, b) for dp in (d, d_other))
  same = all(
    np.array_equal(x, y)
    for x, y in zip(jax.tree.leaves(with_d), jax.tree.leaves(with_other))
  )
  assert same == independent


def test_identity_zero_removes_the_identity_terms(setup, per_term):
  g, d, _, a, b = setup
  networks = tiny_networks(ablation_config.get_config())  # lambda_identity = 0.
  _, (terms, _) = cycle_gan.generator_losses(g, d, a, b, networks=networks)
  assert not any(k.startswith('loss_idt') for k in terms)
  got = total_grad(networks, g, d, a, b)
  scale = norm(got)
  assert_trees_close(got, tree_sum([per_term[t] for t in TERMS[:4]]), scale, 'identity 0')
  assert norm(per_term['loss_idt_A']) > 1e-2 * scale
  assert norm(per_term['loss_idt_B']) > 1e-2 * scale


# --------------------------------------------------------------------------------------
# The row configs
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  'variant, weights',
  [
    ('cycle_alone', (0.0, 10.0, 10.0)),
    ('gan_alone', (1.0, 0.0, 0.0)),
    ('gan_forward', (1.0, 10.0, 0.0)),
    ('gan_backward', (1.0, 0.0, 10.0)),
    ('cyclegan', (1.0, 10.0, 10.0)),
  ],
)
def test_variant_configs_set_what_they_claim(variant, weights):
  config = ablation_config.get_config(variant)
  loss = config.loss
  assert (loss.lambda_gan, loss.lambda_A, loss.lambda_B) == weights
  assert loss.lambda_identity == 0.0
  assert config.dataset == 'synthetic:shapes' and config.crop_size == 32
  with pytest.raises(AttributeError):
    config.loss.lambda_cycle = 1.0  # Locked.


def test_changed_fields_skip_new_defaults_and_removed_fields_at_their_neutral_value():
  config = tiny.get_config()
  saved = json.loads(json.dumps(config.to_dict()))
  assert ablation.changed_fields(saved, config) == []
  del saved['loss']['lambda_swd']  # Added to the code after the run, at its default.
  assert ablation.changed_fields(saved, config) == []
  saved['loss']['swd_levels'] = 1  # Removed since; 1 did what the code does now.
  assert ablation.changed_fields(saved, config) == []
  saved['loss']['swd_levels'] = 2  # Removed, and the run used it.
  assert ablation.changed_fields(saved, config) == ['loss.swd_levels']
  saved['loss']['swd_levels'] = 1
  saved['loss']['lambda_A'] = 5.0
  assert ablation.changed_fields(saved, config) == ['loss.lambda_A']
  assert ablation.changed_fields(saved, config, ignore=('loss.lambda_A',)) == []


def test_config_file_syntax_and_unknown_variant():
  argv = [
    'prog',
    '--config=configs/ablation.py:gan_forward',
    '--config.num_train_steps=7',
  ]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file(
    'config', None, flag_values=values, lock_config=True, sys_argv=argv
  )
  values(argv)
  assert values.config.loss.lambda_B == 0.0 and values.config.num_train_steps == 7
  assert ablation_config.get_config().to_dict() == (
    ablation_config.get_config('cyclegan').to_dict()
  )
  with pytest.raises(
    ValueError, match='cycle_alone, gan_alone, gan_forward, gan_backward, cyclegan'
  ):
    ablation_config.get_config('gan_only')
  with pytest.raises(ValueError, match='full objective'):
    ablation.check_base(ablation_config.get_config('gan_alone'))


# --------------------------------------------------------------------------------------
# The table and the runner
# --------------------------------------------------------------------------------------


def test_table_without_ground_truth_has_dashes_and_no_baseline():
  result = {
    'variant': 'cyclegan',
    'paper_row': 'CycleGAN',
    'steps': 5,
    'wall_s': 61.0,
    'resumed_from_step': None,
    'metrics': {'AtoB/cycle_l1': 0.25, 'BtoA/cycle_l1': 0.5},
  }
  rows = ablation.table_rows([result])
  assert rows == [
    ['`cyclegan`', 'CycleGAN', '5', '–', '–', '–', '–', '0.250', '0.500', '1:01']
  ]


def tiny_base():
  """The ablation base at the shared tiny size (configs/tiny.py)."""
  config = tiny.shrink(ablation_config.get_base_config())
  config.eval.max_images = 4
  return config


def read_md_table(path):
  with open(path, encoding='utf-8') as f:
    lines = [line for line in f.read().splitlines() if line.startswith('|')]
  split = lambda line: [c.strip() for c in line.strip('|').split('|')]
  return split(lines[0]), [split(line) for line in lines[2:]]


@pytest.mark.slow
def test_runner_trains_evaluates_tabulates_and_resumes(tmp_path):
  workdir = str(tmp_path)
  results = ablation.run_ablation(
    tiny_base(), workdir, ['cyclegan', 'gan_alone'], command='test'
  )
  assert [r['variant'] for r in results] == ['gan_alone', 'cyclegan']  # Paper order.

  header, rows = read_md_table(os.path.join(workdir, 'ablation.md'))
  assert header == [
    'variant',
    'paper row',
    'steps',
    'A→B PSNR',
    'A→B SSIM',
    'B→A PSNR',
    'B→A SSIM',
    'cycle L1 A→B→A',
    'cycle L1 B→A→B',
    'wall time',
  ]
  assert [r[0] for r in rows] == ['`gan_alone`', '`cyclegan`', '*input unchanged*']
  for row in rows[:2]:
    assert row[2] == '2'
    for cell in row[3:9]:
      assert np.isfinite(float(cell))
  baseline = rows[2]
  assert float(baseline[3]) == pytest.approx(
    results[0]['metrics']['AtoB/psnr_identity'], abs=0.01
  )

  summary = json.load(open(os.path.join(workdir, 'ablation.json')))
  assert summary['columns'] == header
  assert [v['variant'] for v in summary['variants']] == ['gan_alone', 'cyclegan']
  gan_alone = summary['variants'][0]
  assert gan_alone['loss'] == {
    'lambda_gan': 1.0,
    'lambda_A': 0.0,
    'lambda_B': 0.0,
    'lambda_identity': 0.0,
  }
  assert gan_alone['wall_s'] == pytest.approx(
    gan_alone['train_s'] + gan_alone['eval_s'], abs=0.2
  )
  assert set(gan_alone['metrics']) >= {
    f'{d}/{k}' for d in ('AtoB', 'BtoA') for k in ('psnr', 'ssim', 'cycle_l1')
  }
  saved = json.load(open(os.path.join(workdir, 'cyclegan', 'ablation_result.json')))
  assert saved['config']['loss']['lambda_gan'] == 1.0

  def must_not_run(*args):
    raise AssertionError(f'a finished row ran again: {args[1]}')

  again = ablation.run_ablation(
    tiny_base(),
    workdir,
    ['gan_alone', 'cyclegan'],
    command='test',
    train_fn=must_not_run,
    evaluate_fn=must_not_run,
  )
  assert again == results

  changed = tiny_base()
  changed.num_train_steps = 3
  with pytest.raises(ValueError, match='num_train_steps'):
    ablation.run_ablation(
      changed, workdir, ['cyclegan'], train_fn=must_not_run, evaluate_fn=must_not_run
    )


@pytest.mark.slow
def test_cli_rejects_unknown_rows_and_a_variant_as_base(tmp_path):
  def run(*args):
    return subprocess.run(
      [
        sys.executable,
        '-m',
        'cyclegan_jax.studies.ablation',
        f'--workdir={tmp_path}',
        *args,
      ],
      capture_output=True,
      text=True,
      timeout=300,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'},
    )

  unknown = run('--variants=gan_alone,cycle_only')
  assert unknown.returncode != 0
  assert "Unknown ablation variant 'cycle_only'; valid: cycle_alone" in unknown.stderr
  variant_base = run('--config=configs/ablation.py:gan_alone')
  assert variant_base.returncode != 0 and 'full objective' in variant_base.stderr
  assert not os.listdir(tmp_path)


def test_table_gains_fid_columns_when_rows_have_fid():
  metrics = {
    'AtoB/cycle_l1': 0.25,
    'BtoA/cycle_l1': 0.5,
    'AtoB/psnr_identity': 3.0,
    'AtoB/psnr': 9.0,
    'AtoB/fid': 41.234,
    'BtoA/fid': 77.0,
  }
  result = {
    'variant': 'cyclegan',
    'paper_row': 'CycleGAN',
    'steps': 5,
    'wall_s': 61.0,
    'resumed_from_step': None,
    'metrics': metrics,
  }
  header = ablation.table_header([result])
  assert header[-3:] == ['A→B FID', 'B→A FID', 'wall time']
  rows = ablation.table_rows([result])
  assert all(len(row) == len(header) for row in rows)
  assert rows[0][-3:] == ['41.23', '77.00', '1:01']
  assert rows[1][-3:] == ['–', '–', '–']  # The identity baseline has no FID.
  assert 'FID' not in ' '.join(ablation.table_header())
  plain = dict(result, metrics={k: v for k, v in metrics.items() if 'fid' not in k})
  assert ablation.table_header([plain]) == ablation.table_header()


def test_a_resumed_run_reports_the_training_seconds_of_every_call(tmp_path):
  """Resumed at its last step, a run trains nothing; its seconds are still the first
  call's, not the resumed call's near zero."""
  workdir = str(tmp_path)
  config = tiny.get_config()
  config.num_train_steps = 2
  state = types.SimpleNamespace(step=jnp.asarray(2))

  def train(seconds):
    def fn(config, workdir):
      os.makedirs(os.path.join(workdir, 'checkpoints', '2'), exist_ok=True)
      time.sleep(seconds)
      return state

    return fn

  evaluate = lambda config, workdir: {'AtoB/cycle_l1': 0.1}
  first = ablation.train_and_score(
    config, workdir, train_fn=train(0.3), evaluate_fn=evaluate
  )
  again = ablation.train_and_score(
    config, workdir, train_fn=train(0.0), evaluate_fn=evaluate
  )
  assert first['resumed_from_step'] is None and again['resumed_from_step'] == 2
  assert 0.3 <= first['train_s'] <= again['train_s'] < first['train_s'] + 0.2
