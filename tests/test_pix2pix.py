"""pix2pix: the official update order, batch norm state, devices, resume, test modes.

The step is checked against a hand-written reference of the official
`optimize_parameters` (plain Flax calls in its order, no vjp), on a tiny U-Net with
batch norm (5 downsamplings, 32 px) and a 2-layer batch-norm PatchGAN.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cyclegan_jax import methods
from cyclegan_jax.methods import losses
from cyclegan_jax.methods import pix2pix
from cyclegan_jax.nets import unet
from cyclegan_jax.studies import recipes
from cyclegan_jax.train import step as step_lib
from tests import tiny_run

SIZE = 32  # 2**5: the tiny U-Net's smallest input.


def tiny_config(**changes):
  """The tiny config as pix2pix: batch norm in both nets, dropout, vanilla GAN."""
  config = tiny_run.tiny_config()
  config.method = 'pix2pix'
  config.model.netG = 'unet_128'  # Swapped for a 5-level U-Net by `tiny_networks`.
  config.dataset_mode = 'aligned'
  config.pool_size = 0
  config.model.norm = 'batch'
  config.model.norm_D = 'batch'
  config.model.use_dropout = True
  config.loss.gan_mode = 'vanilla'
  config.loss.lambda_identity = 0.0
  config.crop_size = SIZE
  config.load_size = SIZE + 4
  return recipes.apply(config, changes)


def tiny_networks(config=None, *, num_downs: int = 5) -> pix2pix.Networks:
  """The config's networks with its U-Net swapped for a `num_downs` one (32 px)."""
  config = config or tiny_config()
  networks = step_lib.create_networks(config, 8)
  generator = unet.UnetGenerator(
    num_downs=num_downs,
    ngf=4,
    output_channels=3,
    norm=config.model.norm,
    use_dropout=config.model.use_dropout,
  )
  return dataclasses.replace(networks, generator=generator)


def pairs(seed: int, n: int = 4) -> dict[str, np.ndarray]:
  rng = np.random.RandomState(seed)
  a = rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
  b = np.tanh(a[..., ::-1] * 1.5 + 0.2).astype(np.float32)  # A true pairing.
  return {'A': a, 'B': b}


def init(networks, num_devices: int = 1):
  mesh = jax.make_mesh((num_devices,), ('data',), devices=jax.devices()[:num_devices])
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=(SIZE, SIZE, 3), pool_size=0
  )
  return mesh, state


def plain_state(networks):
  """A one-device state as plain arrays (for the axis-less step)."""
  _, state = init(networks)
  return jax.tree.map(np.asarray, state)


# --------------------------------------------------------------------------------------
# The official update order, against a hand-written reference
# --------------------------------------------------------------------------------------


def reference_step(state, batch, networks, key):
  """The official `optimize_parameters`, written out with plain Flax calls."""
  G, D = networks.generator, networks.discriminator  # noqa: N806
  gan_mode, lam = networks.loss.gan_mode, networks.loss.lambda_L1
  real_a, real_b = batch['A'], batch['B']

  def g_forward(g_params):
    return G.apply(
      {'params': g_params, 'batch_stats': state.batch_stats['G']},
      real_a,
      use_running_average=False,
      deterministic=False,
      rngs={'dropout': key},
      mutable=['batch_stats'],
    )

  def d_train(d_params, stats, x):
    return D.apply(
      {'params': d_params, 'batch_stats': stats},
      x,
      use_running_average=False,
      mutable=['batch_stats'],
    )

  fake_b, g_stats = g_forward(state.params['G'])  # forward(): G's stats once.

  def loss_d(d_params):  # backward_D: fake first, then real.
    fake_ab = jnp.concatenate([real_a, jax.lax.stop_gradient(fake_b)], -1)
    pred_fake, s1 = d_train(d_params, state.batch_stats['D'], fake_ab)
    pred_real, s2 = d_train(
      d_params, s1['batch_stats'], jnp.concatenate([real_a, real_b], -1)
    )
    l_fake = losses.gan_loss(pred_fake, False, gan_mode)
    l_real = losses.gan_loss(pred_real, True, gan_mode)
    return (l_fake + l_real) * 0.5, (s2['batch_stats'], l_fake, l_real)

  d_grads, (d_stats, l_fake, l_real) = jax.grad(loss_d, has_aux=True)(state.params['D'])
  upd, opt_d = networks.tx_d.update(d_grads, state.opt_state_D, state.params['D'])
  new_d = optax.apply_updates(state.params['D'], upd)

  def loss_g(g_params):  # backward_G: the whole graph again, with D's new weights.
    fake, _ = g_forward(g_params)
    pred, s3 = d_train(new_d, d_stats, jnp.concatenate([real_a, fake], -1))
    gan = losses.gan_loss(pred, True, gan_mode)
    l1 = jnp.mean(jnp.abs(fake - real_b)) * lam
    return gan + l1, (s3['batch_stats'], gan, l1)

  g_grads, (d_stats3, g_gan, g_l1) = jax.grad(loss_g, has_aux=True)(state.params['G'])
  upd, opt_g = networks.tx_g.update(g_grads, state.opt_state_G, state.params['G'])
  new_g = optax.apply_updates(state.params['G'], upd)
  params = {'G': new_g, 'D': new_d}
  stats = {'G': g_stats['batch_stats'], 'D': d_stats3}
  metrics = {'G_GAN': g_gan, 'G_L1': g_l1, 'D_real': l_real, 'D_fake': l_fake}
  return params, stats, metrics, (opt_g, opt_d)


def assert_trees_close(got, want, atol=1e-6, rtol=1e-5):
  got_flat = jax.tree_util.tree_leaves_with_path(got)
  want_flat = jax.tree_util.tree_leaves_with_path(want)
  assert [p for p, _ in got_flat] == [p for p, _ in want_flat]
  for (path, g), (_, w) in zip(got_flat, want_flat):
    np.testing.assert_allclose(
      np.asarray(g),
      np.asarray(w),
      atol=atol,
      rtol=rtol,
      err_msg=jax.tree_util.keystr(path),
    )


def test_the_step_is_the_official_update_order():
  networks = tiny_networks()
  state = plain_state(networks)
  batch = pairs(0)
  step = jax.jit(functools.partial(pix2pix.train_step, networks=networks, axis_name=None))
  new, metrics = step(state, batch)
  key = pix2pix.dropout_key(state, None)
  params, stats, want, _ = jax.jit(functools.partial(reference_step, networks=networks))(
    state, batch, key=key
  )
  assert_trees_close(new.params, params)
  assert_trees_close(new.batch_stats, stats)
  for k, v in want.items():
    np.testing.assert_allclose(float(metrics[k]), float(v), rtol=1e-5, err_msg=k)
  assert int(new.step) == 1


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_running_statistics_update_three_times_for_d_and_once_for_g():
  networks = tiny_networks(tiny_config(**{'model.use_dropout': False}))
  state = plain_state(networks)
  batch = pairs(1)
  new, _ = jax.jit(
    functools.partial(pix2pix.train_step, networks=networks, axis_name=None)
  )(state, batch)
  G, D = networks.generator, networks.discriminator  # noqa: N806

  def train_forward(module, params, stats, x):
    y, mutated = module.apply(
      {'params': params, 'batch_stats': stats},
      x,
      use_running_average=False,
      mutable=['batch_stats'],
    )
    return y, mutated['batch_stats']

  # G: one train-mode forward from the old statistics.
  fake, g_once = train_forward(G, state.params['G'], state.batch_stats['G'], batch['A'])
  assert_trees_close(new.batch_stats['G'], g_once)
  _, g_twice = train_forward(G, state.params['G'], g_once, batch['A'])
  assert not np.allclose(jax.tree.leaves(g_twice)[0], jax.tree.leaves(g_once)[0])
  # D: the fake pair, then the real pair (old weights), then the fake pair again with
  # the updated weights; two updates alone are not what the step stored.
  pair = lambda b: jnp.concatenate([batch['A'], b], -1)
  _, d = train_forward(D, state.params['D'], state.batch_stats['D'], pair(fake))
  _, d = train_forward(D, state.params['D'], d, pair(batch['B']))
  _, d3 = train_forward(D, new.params['D'], d, pair(fake))
  assert_trees_close(new.batch_stats['D'], d3, atol=1e-5)
  assert not np.allclose(jax.tree.leaves(d)[0], jax.tree.leaves(d3)[0])


@pytest.mark.slow  # Over 8 s on 2 cores.
def test_l1_weight_and_direction():
  base_cfg = tiny_config(**{'model.use_dropout': False})
  batch = pairs(2)
  got = {}
  for lam in (100.0, 10.0):
    networks = tiny_networks(
      tiny_config(**{'model.use_dropout': False, 'loss.lambda_L1': lam})
    )
    state = plain_state(networks)
    _, metrics = pix2pix.train_step(state, batch, networks=networks, axis_name=None)
    got[lam] = float(metrics['G_L1'])
  np.testing.assert_allclose(got[100.0] / 100.0, got[10.0] / 10.0, rtol=1e-5)
  # BtoA reads domain B's images as real_A: the same as AtoB on the swapped pairs.
  ab = tiny_networks(base_cfg)
  ba = tiny_networks(tiny_config(**{'model.use_dropout': False, 'direction': 'BtoA'}))
  state = plain_state(ab)
  new_ab, m_ab = pix2pix.train_step(
    state, {'A': batch['B'], 'B': batch['A']}, networks=ab, axis_name=None
  )
  new_ba, m_ba = pix2pix.train_step(state, batch, networks=ba, axis_name=None)
  assert_trees_close(new_ba.params, new_ab.params, atol=0, rtol=0)
  assert methods.of_config(base_cfg).directions == {'AtoB': ('G', None)}
  assert methods.of_config(tiny_config(direction='BtoA')).directions == {
    'BtoA': ('G', None)
  }


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_four_devices_equal_one_at_the_same_global_batch():
  networks = tiny_networks(tiny_config(**{'model.use_dropout': False}))
  results = []
  for n in (1, 4):
    mesh, state = init(networks, n)
    step = step_lib.make_parallel_train_step(networks, mesh, state)
    for seed in (3, 4):
      batch = next(step_lib.device_batches([pairs(seed)], mesh))
      state, metrics = step(state, batch)
    results.append(
      (jax.device_get(state.params), jax.device_get(state.batch_stats), metrics)
    )
  (p1, s1, m1), (p4, s4, m4) = results
  assert_trees_close(p4, p1, atol=2e-5, rtol=1e-4)
  assert_trees_close(s4, s1, atol=1e-5, rtol=1e-4)
  for k in m1:
    np.testing.assert_allclose(float(m4[k]), float(m1[k]), rtol=1e-4, err_msg=k)


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_dropout_masks_are_seeded_per_step_and_device():
  # 6 levels: the first with a dropout block (`unet.dropout_blocks`), at 64 px.
  def run(dropout: bool, step_offset: int = 0):
    networks = tiny_networks(tiny_config(**{'model.use_dropout': dropout}), num_downs=6)
    mesh = jax.make_mesh((1,), ('data',), devices=jax.devices()[:1])
    state = step_lib.create_train_state(
      networks, seed=0, mesh=mesh, image_shape=(64, 64, 3), pool_size=0
    )
    state = jax.tree.map(np.asarray, state).replace(step=np.int32(step_offset))
    rng = np.random.RandomState(5)
    a = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    batch = {'A': a, 'B': -a}
    metrics = jax.jit(
      functools.partial(pix2pix.train_step, networks=networks, axis_name=None)
    )(state, batch)[1]
    return {k: float(v) for k, v in metrics.items()}

  first, again = run(True), run(True)
  assert first == again  # Reruns match.
  assert first['G_L1'] != run(False)['G_L1']  # The masks change the fake ...
  assert first['G_L1'] != run(True, step_offset=1)['G_L1']  # ... and each step's differ.


def test_cycle_gan_refuses_batch_norm_and_dropout_in_one_line():
  config = tiny_run.tiny_config()
  for field, value in (('norm', 'batch'), ('norm_D', 'batch'), ('use_dropout', True)):
    c = tiny_run.tiny_config()
    c.model[field] = value
    with pytest.raises(ValueError, match=rf'^model\.{field}=.*pix2pix-only.*\.$') as e:
      step_lib.create_networks(c, 8)
    assert '\n' not in str(e.value)
  del config


def test_pix2pix_refuses_cycle_gan_only_options_in_one_line():
  c = tiny_config()
  c.loss.r1_gamma = 1.0
  with pytest.raises(
    ValueError, match=r'^loss\.r1_gamma=1\.0 does not apply to method=pix2pix'
  ):
    step_lib.create_networks(c, 8)


def test_remat_of_a_unet_is_refused_in_one_line():
  c = tiny_config(**{'model.remat': True})
  with pytest.raises(ValueError, match=r'^model\.remat=True recomputes residual blocks'):
    step_lib.create_networks(c, 8)


def test_bfloat16_keeps_batch_statistics_in_float32():
  networks = tiny_networks(tiny_config(**{'model.use_dropout': False}))
  networks = dataclasses.replace(
    networks,
    generator=networks.generator.clone(dtype=jnp.bfloat16),
    discriminator=networks.discriminator.clone(dtype='bfloat16'),
  )
  state = plain_state(networks)
  new, metrics = jax.jit(
    functools.partial(pix2pix.train_step, networks=networks, axis_name=None)
  )(state, pairs(6))
  assert all(np.isfinite(float(v)) for v in metrics.values())
  for leaf in jax.tree.leaves(new.batch_stats):
    assert leaf.dtype == jnp.float32


# --------------------------------------------------------------------------------------
# End to end: the loop, checkpoints, resume, evaluation, translate, export
# --------------------------------------------------------------------------------------


def e2e_config(**changes):
  """unet_128 at ngf 4 on 128 px synthetic pairs: the smallest config the checks pass."""
  config = tiny_config(**changes)
  config.model.netG = 'unet_128'
  config.crop_size = 128
  config.load_size = 132
  config.dataset = 'synthetic:colors'
  config.eval.max_images = 3
  config.num_sample_images = 2
  return config


def trained_config(**changes):
  """3 steps with a checkpoint after each: the resume test's straight run."""
  return e2e_config(**{'num_train_steps': 3, 'checkpoint_every_steps': 1, **changes})


@pytest.fixture(scope='module', name='trained')
def fixture_trained(tmp_path_factory):
  """A pix2pix workdir trained 3 steps on 4 devices (batch norm and dropout on;
  `trained_config`): the straight run that the resume test compares with, and what
  evaluation, translate and export read."""
  from cyclegan_jax.train import loop  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp('p2p'))
  config = trained_config()
  state = loop.train_and_evaluate(config, workdir)
  return workdir, config, state


def _photo(tmp_path, size=(100, 150)) -> str:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  path = str(tmp_path / 'in' / 'photo.png')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.RandomState(0)
  Image.fromarray((rng.rand(*size, 3) * 255).astype(np.uint8)).save(path)
  return path


@pytest.mark.slow
def test_checkpoints_hold_the_running_statistics(trained):
  from cyclegan_jax.deploy import inference  # pylint: disable=g-import-not-at-top

  workdir, _, state = trained
  restored = inference.restore(workdir)
  assert set(restored.params) == {'G'} and restored.stats_for('G')
  assert_trees_close(
    restored.stats_for('G'), jax.device_get(state.batch_stats['G']), 0, 0
  )
  assert os.path.isfile(os.path.join(workdir, 'samples', 'step_3.png'))


@pytest.mark.slow
def test_resume_is_exact(trained, tmp_path):
  from cyclegan_jax.train import loop  # pylint: disable=g-import-not-at-top

  _, config, whole = trained  # The same config's 3 steps in one run.
  assert int(jax.device_get(whole.step)) == 3
  loop.train_and_evaluate(config, str(tmp_path / 'parts'), max_steps=1)
  parts = loop.train_and_evaluate(config, str(tmp_path / 'parts'))
  assert int(jax.device_get(parts.step)) == 3
  for field in ('params', 'batch_stats', 'opt_state_G', 'opt_state_D'):
    assert_trees_close(
      jax.device_get(getattr(parts, field)),
      jax.device_get(getattr(whole, field)),
      atol=1e-6,
      rtol=0,
    )


@pytest.mark.slow
@pytest.mark.parametrize('model_eval', [False, True])
def test_evaluation_records_the_test_mode(trained, model_eval):
  import json  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

  workdir, _, _ = trained
  config = trained_config(**{'eval.model_eval': model_eval})
  summary = evaluate.evaluate(config, workdir)
  assert 'AtoB/psnr' in summary and not any(k.startswith('BtoA') for k in summary)
  report = json.load(open(os.path.join(workdir, 'eval', 'step_3', 'metrics.json')))
  assert report['test_mode']['model_eval'] is model_eval
  assert ('--eval' in report['test_mode']['line']) is model_eval
  again = evaluate.evaluate(config, workdir)
  assert again == summary  # Seeded: reruns match.


@pytest.mark.slow
def test_translate_any_size_in_both_modes_recorded(trained, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.deploy import translate  # pylint: disable=g-import-not-at-top

  workdir = trained[0]
  photo = _photo(tmp_path)
  outputs = {}
  for model_eval in (False, True, False):
    out = str(tmp_path / f'out_{model_eval}')
    written = translate.run(
      workdir=workdir,
      input_path=photo,
      output=out,
      progress=False,
      overwrite=True,
      model_eval=model_eval,
    )
    assert Image.open(written[0]).size == (150, 100)
    mode = open(os.path.join(out, translate.TEST_MODE_FILE)).read()
    assert ('--eval' in mode) is model_eval
    outputs.setdefault(model_eval, []).append(np.asarray(Image.open(written[0])))
  np.testing.assert_array_equal(*outputs[False])  # Seeded dropout: reruns match.
  assert not np.array_equal(outputs[False][0], outputs[True][0])


@pytest.mark.slow
@pytest.mark.parametrize('model_eval', [False, True])
def test_tiling_is_refused_in_one_line(trained, tmp_path, model_eval):
  from cyclegan_jax.deploy import translate  # pylint: disable=g-import-not-at-top

  with pytest.raises(SystemExit) as e:
    translate.run(
      workdir=trained[0],
      input_path=_photo(tmp_path),
      output=str(tmp_path / 'out'),
      progress=False,
      tile=128,
      model_eval=model_eval,
    )
  message = str(e.value)
  assert '\n' not in message and '--tile' in message
  assert ('1×1 bottleneck' in message) is model_eval
  assert ('statistics of the whole image' in message) is not model_eval


@pytest.mark.slow
@pytest.mark.parametrize('model_eval', [False, True])
def test_stablehlo_export_computes_what_translate_does(trained, tmp_path, model_eval):
  from cyclegan_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.deploy import inference  # pylint: disable=g-import-not-at-top

  workdir = trained[0]
  out = str(tmp_path / 'g.stablehlo')
  metadata = export.run(
    export.Request(
      workdir=workdir,
      direction='AtoB',
      format='stablehlo',
      output=out,
      model_eval=model_eval,
    )
  )
  assert ('--eval' in metadata['test_mode']) is model_eval
  run = export.load_artifact('stablehlo', out)
  x = np.random.RandomState(1).uniform(-1, 1, (2, 100, 136, 3)).astype(np.float32)
  restored = inference.restore(workdir)
  want = inference.generator_fn(restored.generator, inference.TestMode(model_eval))(
    restored.params['G'], x, restored.stats_for('G')
  )
  np.testing.assert_allclose(run(x), np.asarray(want), atol=1e-5)


@pytest.mark.slow
def test_formats_that_cannot_carry_the_unet_refuse_in_one_line(trained, tmp_path):
  from cyclegan_jax.deploy import export  # pylint: disable=g-import-not-at-top

  for fmt, words in (
    ('onnx', 'onnx: the ONNX writer'),
    ('tflite', 'tflite: the default'),
  ):
    with pytest.raises(SystemExit) as e:
      export.run(
        export.Request(
          workdir=trained[0], direction='AtoB', format=fmt, output=str(tmp_path / fmt)
        )
      )
    assert words in str(e.value) and '\n' not in str(e.value)


@pytest.mark.slow
def test_the_demo_config_trains_through_main(tmp_path):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run(
    [
      sys.executable,
      '-m',
      'cyclegan_jax.main',
      '--config=configs/demo_pix2pix.py',
      f'--workdir={tmp_path}',
      '--config.num_train_steps=2',
      '--config.log_every_steps=1',
      '--config.model.ngf=4',
      '--config.model.ndf=4',
    ],
    cwd=repo,
    capture_output=True,
    text=True,
    timeout=600,
    env={**os.environ, 'PYTHONPATH': repo},
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'Trained to step 2' in result.stdout + result.stderr
  assert 'training pairs' in result.stderr and 'G_L1' in result.stderr


P2P_FLAGS = [
  '--config=configs/pix2pix.py',
  '--config.dataset=synthetic:colors',
  '--config.model.netG=unet_128',
  '--config.crop_size=128',
  '--config.load_size=132',
  '--config.model.ngf=4',
  '--config.model.ndf=4',
  '--config.model.netD=n_layers',
  '--config.model.n_layers_D=2',
  '--config.model.use_dropout=False',  # Each device draws its own masks.
  '--config.model.conv_impl=xla',
  '--config.batch_size=4',
  '--config.num_train_steps=2',
  '--config.num_epochs=1',
  '--config.num_epochs_decay=0',
  '--config.checkpoint_every_steps=1',
  '--config.sample_every_steps=100000',
  '--config.num_sample_images=1',
]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
  """2 processes × 2 devices against 1 × 4 on the same global batches (global batch
  statistics across processes), to a small fraction of one step's change."""
  from tests import test_distributed as dist  # pylint: disable=g-import-not-at-top

  two, one = dist.two_processes_and_one(tmp_path, P2P_FLAGS, timeout=480)
  one_step = np.max(
    np.abs(dist.generator_outputs(one, 2, 128) - dist.generator_outputs(one, 1, 128))
  )
  diff = np.max(
    np.abs(dist.generator_outputs(two, 2, 128) - dist.generator_outputs(one, 2, 128))
  )
  assert one_step > 1e-3
  assert diff < 0.05 * one_step, (diff, one_step)


@pytest.mark.slow
def test_btoa_trains_evaluates_and_refuses_the_other_direction(tmp_path):
  from cyclegan_jax.deploy import translate  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.train import loop  # pylint: disable=g-import-not-at-top

  config = e2e_config(direction='BtoA', num_train_steps=1)
  workdir = str(tmp_path / 'w')
  loop.train_and_evaluate(config, workdir)
  summary = evaluate.evaluate(config, workdir)
  assert 'BtoA/psnr' in summary and not any(k.startswith('AtoB') for k in summary)
  with pytest.raises(SystemExit) as e:
    translate.run(
      workdir=workdir,
      input_path=_photo(tmp_path),
      output=str(tmp_path / 'out'),
      direction='AtoB',
      progress=False,
    )
  assert 'translates BtoA only' in str(e.value) and '\n' not in str(e.value)
  with pytest.raises(
    loop.NetworkMismatchError, match=r"^direction: the command line says 'AtoB'"
  ):
    loop.train_and_evaluate(e2e_config(num_train_steps=2), workdir)


@pytest.mark.slow
def test_unet_params_that_do_not_fit_the_config_name_the_field(trained, tmp_path):
  from cyclegan_jax.deploy import inference  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.train import checkpoints  # pylint: disable=g-import-not-at-top

  params, config, _ = checkpoints.restore_params(trained[0])
  config['model']['ngf'] = 8  # A config that lies about the saved networks.
  manager = checkpoints.create_manager(str(tmp_path))
  checkpoints.save(manager, 5, params=jax.device_get(params), config=config)
  manager.wait_until_finished()
  manager.close()
  with pytest.raises(
    inference.ArchitectureMismatchError,
    match=r'model\.ngf=8 \(its G parameters have ngf=4\)',
  ):
    inference.restore(str(tmp_path))


def test_translate_a_converted_zoo_unet_matches_torch_in_eval_mode(tmp_path):
  """Official weights (a torch fixture) through convert and translate --eval: the
  PNGs are torch's `net.eval()` outputs, to 8-bit rounding."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.deploy import convert  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.deploy import translate  # pylint: disable=g-import-not-at-top

  data = os.path.join(os.path.dirname(__file__), 'data')
  workdir = str(tmp_path / 'zoo')
  convert.convert(workdir, g=os.path.join(data, 'G_unet256_ngf2_batch.pth'))
  with np.load(os.path.join(data, 'G_unet256_ngf2_batch.npz')) as f:
    fixture = dict(f)
  os.makedirs(tmp_path / 'in')
  for i, image in enumerate(fixture['x_u8']):
    Image.fromarray(image).save(tmp_path / 'in' / f'{i}.png')
  written = translate.run(
    workdir=workdir,
    input_path=str(tmp_path / 'in'),
    output=str(tmp_path / 'out'),
    progress=False,
    model_eval=True,
  )
  y = np.stack([np.asarray(Image.open(p)) for p in written]).astype(np.float32)
  y = (y / 127.5 - 1.0).reshape(-1, 3)[fixture['eval_idx']]
  np.testing.assert_allclose(y, fixture['eval_y'], atol=0.5 / 127.5 + 1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('fmt,model_eval', [('saved_model', False), ('tflite', True)])
def test_tf_formats_compute_what_translate_does(trained, tmp_path, fmt, model_eval):
  from cyclegan_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.deploy import inference  # pylint: disable=g-import-not-at-top

  workdir = trained[0]
  out = str(tmp_path / f'g.{fmt}')
  export.run(
    export.Request(
      workdir=workdir,
      direction='AtoB',
      format=fmt,
      output=out,
      size=(128, 128) if fmt == 'tflite' else None,
      model_eval=model_eval,
    )
  )
  n = 1 if fmt == 'tflite' else 2
  x = np.random.RandomState(2).uniform(-1, 1, (n, 128, 128, 3)).astype(np.float32)
  restored = inference.restore(workdir)
  want = inference.generator_fn(restored.generator, inference.TestMode(model_eval))(
    restored.params['G'], x, restored.stats_for('G')
  )
  np.testing.assert_allclose(
    export.load_artifact(fmt, out)(x), np.asarray(want), atol=1e-4
  )
