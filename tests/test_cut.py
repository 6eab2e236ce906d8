"""CUT and FastCUT: against the official code's numbers, the update order, devices, and
everything downstream (resume, evaluation, translate, tiling, export, convert).

The official numbers come from tests/data/make_cut_fixtures.py (a torch transcription
of the official CUT networks and loss, run once): MLP head and network parameter counts,
the PatchNCE loss on fixed features, heads and positions, and a converted generator's
output and features.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cyclegan_jax import methods
from cyclegan_jax.cli import config_checks
from cyclegan_jax.methods import cut
from cyclegan_jax.methods import losses
from cyclegan_jax.methods import patchnce
from cyclegan_jax.nets import models
from cyclegan_jax.nets import spec
from cyclegan_jax.nets import torch_weights
from cyclegan_jax.studies import recipes
from cyclegan_jax.train import step as step_lib
from tests import tiny_run
from tests import updates

DATA = os.path.join(os.path.dirname(__file__), 'data')
FIXTURES = os.path.join(DATA, 'cut_fixtures.npz')
G_PTH = os.path.join(DATA, 'G_cut_ngf4.pth')
SIZE = 16


def tiny_config(**changes):
  """The tiny config as CUT: the antialiased layouts, 16 patches per layer."""
  config = tiny_run.tiny_config()
  config.method = 'cut'
  config.pool_size = 0
  config.loss.lambda_identity = 0.0
  config.model.upsample = 'blur'
  config.model.downsample = 'blur'
  config.model.downsample_D = 'blur'
  config.cut.num_patches = 16
  return recipes.apply(config, changes)


def fastcut_changes():
  return {
    'cut.nce_idt': False,
    'cut.lambda_NCE': 10.0,
    'cut.flip_equivariance': True,
  }


def images(seed: int, n: int = 4) -> dict[str, np.ndarray]:
  rng = np.random.RandomState(seed)
  a = rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
  b = rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
  return {'A': a, 'B': b}


def init(networks, num_devices: int = 1):
  mesh = jax.make_mesh((num_devices,), ('data',), devices=jax.devices()[:num_devices])
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=(SIZE, SIZE, 3), pool_size=0
  )
  return mesh, state


def assert_trees_close(got, want, atol=1e-6, rtol=1e-5):
  got_flat = jax.tree_util.tree_leaves_with_path(got)
  want_flat = jax.tree_util.tree_leaves_with_path(want)
  assert [p for p, _ in got_flat] == [p for p, _ in want_flat]
  for (path, g), (_, w) in zip(got_flat, want_flat):
    np.testing.assert_allclose(
      np.asarray(g), np.asarray(w), atol=atol, rtol=rtol, err_msg=str(path)
    )


# --------------------------------------------------------------------------------------
# Against the official code (torch fixtures)
# --------------------------------------------------------------------------------------


def test_mlp_heads_have_the_official_parameter_counts():
  fx = np.load(FIXTURES)
  channels = tuple(int(c) for c in fx['head_channels'])
  params = patchnce.PatchHeads(channels, 256).init_params(jax.random.key(0))
  counts = [
    sum(x.size for x in jax.tree.leaves((params[f'mlp_{i}_0'], params[f'mlp_{i}_2'])))
    for i in range(len(channels))
  ]
  assert counts == list(fx['head_counts']) == [66816, 98816, 131584, 131584, 131584]


def test_the_default_generator_has_those_feature_channels():
  """resnet_9blocks at ngf 64, antialiased: the official layers 0,4,8,12,16 have
  3, 128, 256, 256 and 256 channels (so the heads above are CUT's)."""
  config = tiny_config(**{'model.netG': 'resnet_9blocks', 'model.ngf': 64})
  generator = models.generator_from_config(config.model)
  got = cut.feature_channels(generator, (0, 4, 8, 12, 16), 3)
  assert got == tuple(int(c) for c in np.load(FIXTURES)['head_channels'])


def test_networks_have_the_official_parameter_counts():
  fx = np.load(FIXTURES)
  x = jnp.zeros((1, 64, 64, 3))
  count = lambda m: sum(
    int(np.prod(v.shape))
    for v in jax.tree.leaves(jax.eval_shape(m.init, jax.random.key(0), x))
  )
  generator = models.ResnetGenerator(upsample='blur', downsample='blur')
  critic = models.PatchDiscriminator(downsample='blur')
  assert count(generator) == int(fx['g_count_default'])
  assert count(critic) == int(fx['d_count_default'])


@pytest.mark.parametrize('all_negatives', [False, True])
def test_patchnce_loss_matches_the_official_within_1e5(all_negatives):
  fx = np.load(FIXTURES)
  layers = 4
  channels = tuple(int(fx[f'nce_q_{i}'].shape[-1]) for i in range(layers))
  heads = patchnce.PatchHeads(channels, int(fx['nce_w_0_2'].shape[-1]))
  params = {
    f'mlp_{i}_{j}': {'kernel': fx[f'nce_w_{i}_{j}'], 'bias': fx[f'nce_b_{i}_{j}']}
    for i in range(layers)
    for j in (0, 2)
  }
  ids = [jnp.asarray(fx[f'nce_ids_{i}']) for i in range(layers)]

  def project(name):
    samples = [
      patchnce.sample(jnp.asarray(fx[f'{name}_{i}']), ids[i]) for i in range(layers)
    ]
    return [patchnce.l2_normalize(s) for s in heads.apply({'params': params}, samples)]

  q, k = project('nce_q'), project('nce_k')
  total = 0.0
  for i in range(layers):
    rows = patchnce.patch_nce(
      q[i], k[i], batch=2, temperature=float(fx['nce_T']), all_negatives=all_negatives
    )
    want = fx[f'nce_rows_{i}_{int(all_negatives)}']
    np.testing.assert_allclose(np.asarray(rows), want, atol=1e-5, rtol=0)
    total += jnp.mean(rows)
  np.testing.assert_allclose(
    float(total / layers), float(fx[f'nce_total_{int(all_negatives)}']), atol=1e-5
  )


def test_a_converted_official_generator_computes_its_output_and_features():
  fx = np.load(FIXTURES)
  sd = torch_weights.read_state_dict(G_PTH)
  assert torch_weights.is_antialiased_state_dict(sd)
  g_spec, params = torch_weights.antialiased_generator_from_state_dict(sd)
  assert (g_spec.upsample, g_spec.downsample, g_spec.num_blocks) == ('blur', 'blur', 6)
  generator = models.ResnetGenerator(
    ngf=g_spec.ngf,
    num_blocks=g_spec.num_blocks,
    upsample='blur',
    downsample='blur',
    conv_impl='xla',
  )
  x = fx['g_input']
  np.testing.assert_allclose(
    np.asarray(generator.apply({'params': params}, x)), fx['g_output'], atol=1e-4
  )
  feats = generator.apply({'params': params}, x, (0, 4, 8, 12, 16))
  for layer, f in zip((0, 4, 8, 12, 16), feats):
    np.testing.assert_allclose(np.asarray(f), fx[f'g_feat_{layer}'], atol=1e-4)


def test_the_official_layer_numbering_of_both_layouts():
  blur = spec.torch_layers(
    spec.generator_stages(64, 9, 3, upsample='blur', downsample='blur')
  )
  plain = spec.torch_layers(spec.generator_stages(64, 9, 3))
  assert (len(blur), len(plain)) == (32, 28)  # The official nn.Sequential lengths.
  stages = spec.generator_stages(64, 9, 3, upsample='blur', downsample='blur')
  named = [(stages[i].path, point) for i, point in (blur[j] for j in (0, 4, 8, 12, 16))]
  assert named == [
    (('stem',), 'pad'),
    (('down_0',), 'conv'),
    (('down_1',), 'conv'),
    (('block_0', 'conv_1'), 'out'),
    (('block_4', 'conv_1'), 'out'),
  ]


# --------------------------------------------------------------------------------------
# Sampling, and the step against a hand-written official iteration
# --------------------------------------------------------------------------------------


def test_patch_positions_are_distinct_and_shared_by_query_and_key():
  feats = [jnp.zeros((2, 22, 22, 3)), jnp.zeros((2, 4, 4, 8))]
  ids = patchnce.patch_ids(jax.random.key(0), feats, 256)
  assert [len(i) for i in ids] == [256, 16]  # min(num_patches, H·W), as official.
  assert all(len(set(np.asarray(i).tolist())) == len(i) for i in ids)
  # Keys at the queries' positions: each positive is the best logit, far below chance
  # (log 17); keys at other positions are not.
  x = jax.random.normal(jax.random.key(1), (2, 4, 4, 8))
  q = patchnce.l2_normalize(patchnce.sample(x, ids[1]))
  k_other = patchnce.l2_normalize(patchnce.sample(x, jnp.roll(ids[1], 1)))
  same = patchnce.patch_nce(q, q, batch=2, temperature=0.07)
  other = patchnce.patch_nce(q, k_other, batch=2, temperature=0.07)
  assert float(jnp.mean(same)) < 0.05 < np.log(17) < float(jnp.mean(other))


def flipped_at(state, networks) -> bool:
  """Whether FastCUT's coin flips the inputs of the step at `state`."""
  coin = cut.step_keys(state)[0]
  return networks.settings.flip_equivariance and bool(jax.random.bernoulli(coin))


def reference_step(state, batch, networks, flipped: bool):
  """The official `optimize_parameters`, written out with plain Flax calls: G's whole
  graph recomputed for G's loss, NCE and NCE_Y with separate encoder calls."""
  s = networks.settings
  G, D, F = networks.generator, networks.discriminator, networks.heads  # noqa: N806
  real_a, real_b = batch['A'], batch['B']
  n = real_a.shape[0]
  _, key_nce, key_idt = cut.step_keys(state)
  real = jnp.concatenate([real_a, real_b]) if s.nce_idt else real_a
  g_in = real[:, :, ::-1] if flipped else real
  fake = G.apply({'params': state.params['G']}, g_in)

  def loss_d(dp):
    fake_b = jax.lax.stop_gradient(fake[:n])
    l_fake = losses.gan_loss(D.apply({'params': dp}, fake_b), False, s.gan_mode)
    l_real = losses.gan_loss(D.apply({'params': dp}, real_b), True, s.gan_mode)
    return (l_fake + l_real) * 0.5

  d_grads = jax.grad(loss_d)(state.params['D'])
  upd, opt_d = networks.tx_d.update(d_grads, state.opt_state_D, state.params['D'])
  new_d = optax.apply_updates(state.params['D'], upd)

  def calculate_nce(gp, fp, src, tgt, key):
    feat_q = G.apply({'params': gp}, tgt, s.nce_layers)
    if flipped:
      feat_q = [f[:, :, ::-1] for f in feat_q]
    feat_k = G.apply({'params': gp}, src, s.nce_layers)
    ids = patchnce.patch_ids(key, feat_k, s.num_patches)
    k = [patchnce.sample(f, i) for f, i in zip(feat_k, ids)]
    q = [patchnce.sample(f, i) for f, i in zip(feat_q, ids)]
    k = [patchnce.l2_normalize(x) for x in F.apply({'params': fp}, k)]
    q = [patchnce.l2_normalize(x) for x in F.apply({'params': fp}, q)]
    total = 0.0
    for q_l, k_l in zip(q, k):
      rows = patchnce.patch_nce(q_l, k_l, batch=n, temperature=s.nce_T)
      total += rows.mean() * s.lambda_NCE
    return total / len(q)

  def loss_g(gp, fp):
    fake = G.apply({'params': gp}, g_in)
    fake_b = fake[:n]
    gan = losses.gan_loss(D.apply({'params': new_d}, fake_b), True, s.gan_mode)
    nce = calculate_nce(gp, fp, real_a, fake_b, key_nce)
    if s.nce_idt:
      nce_y = calculate_nce(gp, fp, real_b, fake[n:], key_idt)
      nce = (nce + nce_y) * 0.5
    return gan * s.lambda_GAN + nce

  g_grads, f_grads = jax.grad(loss_g, argnums=(0, 1))(
    state.params['G'], state.params['F']
  )
  upd, _ = networks.tx_g.update(g_grads, state.opt_state_G, state.params['G'])
  new_g = optax.apply_updates(state.params['G'], upd)
  upd, _ = networks.tx_f.update(f_grads, state.opt_state_F, state.params['F'])
  new_f = optax.apply_updates(state.params['F'], upd)
  return {'G': new_g, 'D': new_d, 'F': new_f}


@pytest.mark.slow  # Over 10 s on 2 cores.
@pytest.mark.parametrize('mode', ['cut', 'fastcut'])
def test_the_step_is_the_official_iteration(mode):
  changes = fastcut_changes() if mode == 'fastcut' else {}
  networks = updates.with_sgd(step_lib.create_networks(tiny_config(**changes), 8))
  _, state = init(networks)
  state = jax.tree.map(np.asarray, state)
  if mode == 'fastcut':  # A step whose coin comes up flipped.
    k = next(
      k for k in range(64) if flipped_at(state.replace(step=np.int32(k)), networks)
    )
    state = state.replace(step=np.int32(k))
  batch = {k: jnp.asarray(v) for k, v in images(3).items()}
  flipped = flipped_at(state, networks)
  assert flipped is (mode == 'fastcut')
  # Compiled, like the step: run op by op on the tests' 4-device CPU client, the same
  # sums come out in other orders, and the PatchNCE normalisations magnify that to ~5e-3
  # of G's update.
  want = jax.jit(lambda st, b: reference_step(st, b, networks, flipped))(state, batch)
  got, metrics = jax.jit(
    lambda st, b: cut.train_step(st, b, networks=networks, axis_name=None)
  )(state, batch)
  updates.assert_updates_close(got.params, want, state.params)
  assert ('NCE_Y' in metrics) and (float(metrics['NCE_Y']) > 0) is (mode == 'cut')


@pytest.mark.slow  # Over 10 s on 2 cores.
@pytest.mark.parametrize('all_negatives', [False, True])
def test_four_devices_equal_one_at_the_same_global_batch(all_negatives):
  changes = {
    **fastcut_changes(),
    'cut.nce_includes_all_negatives_from_minibatch': all_negatives,
  }
  networks = updates.with_sgd(step_lib.create_networks(tiny_config(**changes), 8))
  results = []
  for n in (1, 4):
    mesh, state = init(networks, n)
    step = step_lib.make_parallel_train_step(networks, mesh, state)
    params, metrics = [], []
    for seed in (3, 4):
      batch = next(step_lib.device_batches([images(seed)], mesh))
      state, m = step(state, batch)
      params.append(jax.device_get(state.params))
      metrics.append(m)
    results.append((params, metrics))
  (p1, m1), (p4, m4) = results
  _, start = init(networks)
  # The first step's update exactly; the second's only through its losses: at rate-1 SGD
  # a leaky ReLU that summation-order noise tips across its kink after step 1 changes one
  # bias's second gradient by ~0.5 % of the largest update on some CPUs.
  updates.assert_updates_close(p4[0], p1[0], jax.device_get(start.params))
  for step_m1, step_m4 in zip(m1, m4):
    for k in step_m1:
      np.testing.assert_allclose(
        float(step_m4[k]), float(step_m1[k]), rtol=1e-4, err_msg=k
      )


# --------------------------------------------------------------------------------------
# Configs and their checks
# --------------------------------------------------------------------------------------


def test_presets_are_the_official_defaults():
  from configs import cut as cut_config  # pylint: disable=g-import-not-at-top
  from configs import demo_cut  # pylint: disable=g-import-not-at-top
  from configs import fastcut  # pylint: disable=g-import-not-at-top

  c, f = cut_config.get_config(), fastcut.get_config()
  for config in (c, f, demo_cut.get_config()):
    config_checks.validate(config)
    assert methods.of_config(config).name == 'cut'
  assert (c.cut.lambda_NCE, c.cut.nce_idt, c.cut.flip_equivariance) == (1.0, True, False)
  assert (f.cut.lambda_NCE, f.cut.nce_idt, f.cut.flip_equivariance) == (10.0, False, True)
  assert (c.num_epochs, c.num_epochs_decay, f.num_epochs, f.num_epochs_decay) == (
    200,
    200,
    150,
    50,
  )
  assert (c.cut.nce_layers, c.cut.num_patches, c.cut.nce_T) == ('0,4,8,12,16', 256, 0.07)
  assert (c.pool_size, c.loss.gan_mode, c.optim.lr, c.optim.beta1) == (
    0,
    'lsgan',
    2e-4,
    0.5,
  )
  assert (c.model.upsample, c.model.downsample, c.model.downsample_D) == ('blur',) * 3
  assert (c.cut.init_type, c.cut.init_gain) == ('xavier', 0.02)


@pytest.mark.parametrize(
  'changes,words',
  [
    ({'pool_size': 50}, 'config.pool_size=50: CUT keeps no image pool'),
    ({'model.netG': 'unet_128'}, "config.model.netG='unet_128': CUT contrasts"),
    ({'cut.nce_layers': '4,0'}, "config.cut.nce_layers='4,0': must be increasing"),
    ({'cut.nce_T': 0.0}, 'config.cut.nce_T=0.0'),
    ({'cut.netF': 'reshape'}, "config.cut.netF='reshape'"),
    ({'model.downsample_D': 'avg'}, "config.model.downsample_D='avg'"),
    ({'model.netD': 'pixel'}, "config.model.downsample_D='blur': the PixelGAN"),
  ],
)
def test_config_checks_refuse_in_one_line(changes, words):
  with pytest.raises(ValueError) as e:
    config_checks.validate(tiny_config(**changes))
  assert words in str(e.value) and '\n' not in str(e.value)


def test_layers_past_the_encoder_and_cycle_gan_options_are_refused_in_one_line():
  with pytest.raises(ValueError, match='Feature layer 40 is not one of') as e:
    step_lib.create_networks(tiny_config(**{'cut.nce_layers': '0,40'}), 8)
  assert '\n' not in str(e.value)
  with pytest.raises(ValueError, match='does not apply to method=cut') as e:
    step_lib.create_networks(tiny_config(**{'loss.r1_gamma': 1.0}), 8)
  assert '\n' not in str(e.value)


@pytest.mark.slow  # Over 10 s on 2 cores.
def test_xavier_init_draws_the_official_scale():
  networks = step_lib.create_networks(
    tiny_config(**{'model.ngf': 16, 'cut.netF_nc': 64}), 8
  )
  params = cut.init_params(networks, jax.random.key(0), (SIZE, SIZE, 3))
  kernel = np.asarray(params['G']['block_0']['conv_0']['kernel'])  # 3×3, 64 → 64.
  want = 0.02 * np.sqrt(2.0 / (9 * (64 + 64)))
  assert abs(kernel.std() / want - 1) < 0.05
  dense = np.asarray(params['F']['mlp_1_2']['kernel'])  # 64 → 64.
  assert abs(dense.std() / (0.02 * np.sqrt(2.0 / 128)) - 1) < 0.05
  assert not np.any(np.asarray(params['F']['mlp_1_2']['bias']))


# --------------------------------------------------------------------------------------
# End to end: the loop, resume, evaluation, translate, tiling, export, convert
# --------------------------------------------------------------------------------------


def e2e_config(**changes):
  config = tiny_config(**changes)
  config.eval.max_images = 3
  return config


def trained_config():
  """3 steps with a checkpoint after each: the resume test's straight run."""
  return e2e_config(num_train_steps=3, checkpoint_every_steps=1)


@pytest.fixture(scope='module', name='trained')
def fixture_trained(tmp_path_factory):
  """A CUT workdir trained 3 steps on 4 devices (`trained_config`): the straight run
  that the resume test compares with, and what evaluation, translate and export read."""
  from cyclegan_jax.train import loop  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp('cut'))
  state = loop.train_and_evaluate(trained_config(), workdir)
  return workdir, state


def _photo(tmp_path, size=(40, 52)) -> str:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  path = str(tmp_path / 'in' / 'photo.png')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.RandomState(0)
  Image.fromarray((rng.rand(*size, 3) * 255).astype(np.uint8)).save(path)
  return path


@pytest.mark.slow
def test_resume_is_exact(trained, tmp_path):
  from cyclegan_jax.train import loop  # pylint: disable=g-import-not-at-top

  config = trained_config()
  _, whole = trained  # The same config's 3 steps in one run.
  assert int(jax.device_get(whole.step)) == 3
  loop.train_and_evaluate(config, str(tmp_path / 'parts'), max_steps=1)
  parts = loop.train_and_evaluate(config, str(tmp_path / 'parts'))
  assert int(jax.device_get(parts.step)) == 3
  for field in ('params', 'opt_state_G', 'opt_state_D', 'opt_state_F', 'shared_rng'):
    assert_trees_close(
      jax.device_get(getattr(parts, field)),
      jax.device_get(getattr(whole, field)),
      atol=1e-6,
      rtol=0,
    )


@pytest.mark.slow
def test_evaluation_scores_the_one_direction(trained):
  from cyclegan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

  workdir, _ = trained
  summary = evaluate.evaluate(trained_config(), workdir)
  assert 'AtoB/psnr' in summary and not any(k.startswith('BtoA') for k in summary)
  assert os.path.isfile(os.path.join(workdir, 'eval', 'step_3', 'metrics.json'))


@pytest.mark.slow
def test_translate_tiled_equals_untiled(trained, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.deploy import translate  # pylint: disable=g-import-not-at-top

  photo = _photo(tmp_path)
  outputs = []
  for tile in (0, 16):
    written = translate.run(
      workdir=trained[0],
      input_path=photo,
      output=str(tmp_path / f'out_{tile}'),
      progress=False,
      tile=tile,
      overlap=4 if tile else 0,
    )
    outputs.append(np.asarray(Image.open(written[0])).astype(int))
  assert outputs[0].shape == (40, 52, 3)
  assert np.abs(outputs[0] - outputs[1]).max() <= 1
  with pytest.raises(SystemExit) as e:
    translate.run(
      workdir=trained[0],
      input_path=photo,
      output=str(tmp_path / 'other'),
      progress=False,
      direction='BtoA',
    )
  assert '--direction=AtoB' in str(e.value) and '\n' not in str(e.value)


@pytest.mark.slow
@pytest.mark.parametrize('fmt', ['stablehlo', 'onnx'])
def test_export_computes_what_translate_does(trained, tmp_path, fmt):
  from cyclegan_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.deploy import inference  # pylint: disable=g-import-not-at-top
  from tests import test_export  # pylint: disable=g-import-not-at-top

  if fmt == 'onnx':
    pytest.importorskip('onnxruntime')
  workdir = trained[0]
  out = str(tmp_path / f'g.{fmt}')
  metadata = export.run(
    export.Request(workdir=workdir, direction='AtoB', format=fmt, output=out)
  )
  assert metadata['model']['upsample'] == 'blur'
  run = test_export.runtime(fmt, out)
  x = np.random.RandomState(1).uniform(-1, 1, (2, 20, 28, 3)).astype(np.float32)
  restored = inference.restore(workdir)
  want = inference.generator_fn(restored.generator, inference.TestMode(False))(
    restored.params['G'], x, restored.stats_for('G')
  )
  np.testing.assert_allclose(run(x), np.asarray(want), atol=1e-4)


@pytest.mark.slow
def test_convert_an_official_cut_generator_and_translate_with_it(tmp_path):
  from cyclegan_jax.deploy import convert  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.deploy import inference  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path / 'converted')
  params, config = convert.convert_cut(workdir, g=G_PTH)
  assert config['method'] == 'cut' and set(params) == {'G'}
  assert (config['model']['upsample'], config['model']['ngf']) == ('blur', 4)
  restored = inference.restore(workdir)
  fx = np.load(FIXTURES)
  got = inference.generator_fn(restored.generator, inference.TestMode(False))(
    restored.params['G'], fx['g_input'], restored.stats_for('G')
  )
  np.testing.assert_allclose(np.asarray(got), fx['g_output'], atol=1e-4)


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
      '--config=configs/demo_cut.py',
      f'--workdir={tmp_path}',
      '--config.num_train_steps=2',
      '--config.log_every_steps=1',
      '--config.model.ngf=4',
      '--config.model.ndf=4',
      '--config.cut.num_patches=8',
    ],
    cwd=repo,
    capture_output=True,
    text=True,
    timeout=900,
    env={**os.environ, 'PYTHONPATH': repo},
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'Trained to step 2' in result.stdout + result.stderr
  assert 'NCE' in result.stderr


CUT_FLAGS = [
  '--config=configs/cut.py',
  '--config.dataset=synthetic:colors',
  '--config.model.netG=resnet_6blocks',
  '--config.crop_size=16',
  '--config.load_size=20',
  '--config.model.ngf=4',
  '--config.model.ndf=4',
  '--config.model.netD=n_layers',
  '--config.model.n_layers_D=2',
  '--config.model.conv_impl=xla',
  '--config.cut.num_patches=16',
  '--config.cut.init_type=normal',  # Larger gradients than xavier's: a visible step.
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
  """The multi-process launch: 2 processes × 2 devices against 1 × 4 on the same global
  batches (the same patch positions everywhere), to a small fraction of one step."""
  from tests import test_distributed as dist  # pylint: disable=g-import-not-at-top

  two, one = dist.two_processes_and_one(tmp_path, CUT_FLAGS, timeout=900)
  one_step = np.max(
    np.abs(dist.generator_outputs(one, 2, 16) - dist.generator_outputs(one, 1, 16))
  )
  diff = np.max(
    np.abs(dist.generator_outputs(two, 2, 16) - dist.generator_outputs(one, 2, 16))
  )
  assert one_step > 1e-4
  assert diff < 0.05 * one_step, (diff, one_step)
