"""CoGAN: tied layers, the step, devices, latent inversion and the shared commands.

Tiny coupled networks (16 px, ngf 4, z of 8) so that every program compiles in
seconds on a CPU; the end-to-end tests train 2 steps on 4 devices and then evaluate,
translate, tile and export that checkpoint.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cyclegan_jax import methods
from cyclegan_jax.cli import config_checks
from cyclegan_jax.methods import cogan
from cyclegan_jax.nets import cogan as nets
from cyclegan_jax.studies import recipes
from cyclegan_jax.train import step as step_lib
from tests import tiny_run

SIZE = 16


def tiny_config(**changes):
  """The tiny config as CoGAN: 16 px, coupled nets at ngf/ndf 4, z of 8."""
  config = tiny_run.tiny_config()
  config.method = 'cogan'
  config.pool_size = 0
  config.loss.gan_mode = 'vanilla'
  config.loss.lambda_identity = 0.0
  config.cogan.nz = 8
  config.cogan.ngf = 4
  config.cogan.ndf = 4
  config.cogan.invert_steps = 5
  config.cogan.invert_restarts = 2
  return recipes.apply(config, changes)


def unpaired(seed: int, n: int = 4) -> dict[str, np.ndarray]:
  rng = np.random.RandomState(seed)
  a = rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32)
  b = rng.uniform(-1, 1, (n, SIZE, SIZE, 3)).astype(np.float32) * 0.5
  return {'A': a, 'B': b}


def init(networks, num_devices: int = 1):
  mesh = jax.make_mesh((num_devices,), ('data',), devices=jax.devices()[:num_devices])
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=(SIZE, SIZE, 3), pool_size=0
  )
  return mesh, state


def plain_state(networks):
  """A one-device state as plain arrays (for the axis-less step and direct calls)."""
  return jax.tree.map(np.asarray, init(networks)[1])


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


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


# --------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------


def test_the_128_px_layers_are_the_public_face_model():
  g = nets.generator_layers(128, ngf=32, max_filters=1024)
  assert [(layer.kind, layer.features) for layer in g] == [
    ('fc', 1024),
    ('up', 512),
    ('up', 256),
    ('up', 128),
    ('up', 64),
    ('up', 32),
    ('out', 0),
  ]
  d = nets.critic_layers(128, ndf=32, max_filters=1024)
  assert [(layer.kind, layer.features, layer.kernel) for layer in d] == [
    ('down', 32, 5),
    ('down', 64, 5),
    ('down', 128, 5),
    ('down', 256, 3),
    ('down', 512, 3),
    ('down', 1024, 3),
    ('fc', 2048, 0),
    ('out', 1, 0),
  ]
  # 256 px: one more stage each, the filters capped.
  assert nets.generator_layers(256, 32, 1024)[0].features == 1024
  assert len(nets.critic_layers(256, 32, 1024)) == 9


def test_tied_layers_are_one_set_of_parameters():
  networks = step_lib.create_networks(tiny_config(), 8)
  _, state = init(networks)
  g, d = state.params['G'], state.params['D']
  assert set(g) == {'shared', 'head_A', 'head_B'} == set(d)
  # 16 px, ngf 4, z of 8: fc to 4x4x16, up to 8x8x8 and 16x16x4 (tied), then each
  # domain's own 3x3 image conv.
  norm_prelu = lambda c: 2 * c  # The batch norm's bias and the PReLU slopes.
  # Layers before a batch norm have no bias of their own (the norm's acts).
  fc = 8 * 4 * 4 * 16 + norm_prelu(16)
  up = lambda c_in, c_out: 4 * 4 * c_in * c_out + norm_prelu(c_out)
  assert count(g['shared']) == fc + up(16, 8) + up(8, 4)
  assert count(g['head_A']) == count(g['head_B']) == 3 * 3 * 4 * 3 + 3
  # The critic: own first conv per domain, the rest once.
  assert count(d['head_A']) == count(d['head_B']) == 5 * 5 * 3 * 4 + norm_prelu(4)
  shared_total = count(g) - count(g['head_A']) - count(g['head_B'])
  assert shared_total == count(g['shared'])  # No second copy anywhere.


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_a_gradient_update_moves_the_tied_layers_of_both_domains_at_once():
  networks = step_lib.create_networks(tiny_config(), 8)
  state = plain_state(networks)
  variables = {'params': state.params['G'], 'batch_stats': state.batch_stats['G']}
  z = jnp.ones((2, 8)) * 0.3
  render = lambda params, domain: networks.generator.apply(
    {**variables, 'params': params}, z, True, domain
  )
  grads_a = jax.grad(lambda p: jnp.sum(render(p, 'A')))(state.params['G'])
  # Domain A's image reads the tied trunk and its own head, never B's head.
  assert count_nonzero(grads_a['shared']) > 0 and count_nonzero(grads_a['head_A']) > 0
  assert count_nonzero(grads_a['head_B']) == 0
  # One step of the tied layers changes both domains' images: there is one copy.
  moved = dict(state.params['G'])
  moved['shared'] = jax.tree.map(
    lambda x, g: x - 0.1 * g, moved['shared'], grads_a['shared']
  )
  for domain in 'AB':
    assert not np.allclose(render(moved, domain), render(state.params['G'], domain))
  new, _ = jax.jit(
    functools.partial(cogan.train_step, networks=networks, axis_name=None)
  )(jax.tree.map(np.asarray, state), unpaired(0))
  assert set(new.params['G']) == {'shared', 'head_A', 'head_B'}
  changed = jax.tree.map(
    lambda a, b: bool(np.any(a != b)), new.params['G'], state.params['G']
  )
  assert all(jax.tree.leaves(changed['shared']))


def count_nonzero(tree) -> int:
  return sum(int(np.count_nonzero(np.asarray(x))) for x in jax.tree.leaves(tree))


# --------------------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------------------


def test_a_few_steps_train_both_sides():
  networks = step_lib.create_networks(tiny_config(), 8)
  mesh, state = init(networks)
  step = step_lib.make_parallel_train_step(networks, mesh, state)
  before = jax.device_get(state.params)
  for seed in range(3):
    state, metrics = step(state, next(step_lib.device_batches([unpaired(seed)], mesh)))
  assert set(metrics) == {'G_A', 'G_B', 'D_A', 'D_B', 'learning_rate'}
  assert all(np.isfinite(float(v)) for v in metrics.values())
  after = jax.device_get(state.params)
  for name in ('G', 'D'):
    assert not np.allclose(count(before[name]), 0)
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), after[name], before[name])
    assert all(jax.tree.leaves(moved)), name
  assert int(jax.device_get(state.step)) == 3


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_four_devices_equal_one_at_the_same_global_batch():
  networks = step_lib.create_networks(tiny_config(), 8)
  results = []
  for n in (1, 4):
    mesh, state = init(networks, n)
    step = step_lib.make_parallel_train_step(networks, mesh, state)
    for seed in (3, 4):
      state, metrics = step(state, next(step_lib.device_batches([unpaired(seed)], mesh)))
    results.append(
      (jax.device_get(state.params), jax.device_get(state.batch_stats), metrics)
    )
  (p1, s1, m1), (p4, s4, m4) = results
  assert_trees_close(p4, p1, atol=2e-5, rtol=1e-4)
  assert_trees_close(s4, s1, atol=1e-5, rtol=1e-4)
  for k in m1:
    np.testing.assert_allclose(float(m4[k]), float(m1[k]), rtol=1e-4, err_msg=k)


def test_weight_decay_reaches_kernels_only():
  networks = step_lib.create_networks(tiny_config(**{'cogan.weight_decay': 0.5}), 8)
  _, state = init(networks)
  zeros = jax.tree.map(jnp.zeros_like, state.params['G'])
  updates, _ = networks.tx_g.update(zeros, state.opt_state_G, state.params['G'])
  flat = jax.tree_util.tree_leaves_with_path(updates)
  for path, update in flat:
    is_kernel = jax.tree_util.keystr(path).endswith("['kernel']")
    assert bool(np.any(np.asarray(update) != 0)) is is_kernel, jax.tree_util.keystr(path)


# --------------------------------------------------------------------------------------
# Translation by latent inversion
# --------------------------------------------------------------------------------------


def _settled(networks, state):
  """The generator's variables with running statistics of its own outputs: at
  initialisation they are (0, 1), which renders near-blank images."""
  z = jax.random.uniform(jax.random.key(3), (16, 8), minval=-1, maxval=1)

  def settle(_, stats):
    _, mutated = networks.generator.apply(
      {'params': state.params['G'], 'batch_stats': stats}, z, mutable=['batch_stats']
    )
    return mutated['batch_stats']

  stats = jax.lax.fori_loop(0, 60, settle, state.batch_stats['G'])
  return {'params': state.params['G'], 'batch_stats': stats}


def _targets(networks, variables, n=3):
  """Domain A images the generator can make exactly, from known z."""
  z = jax.random.uniform(jax.random.key(7), (n, 8), minval=-0.8, maxval=0.8)
  return networks.generator.apply(variables, z, True, 'A')


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_inversion_reduces_the_reconstruction_error_and_is_deterministic():
  networks = step_lib.create_networks(tiny_config(), 8)
  variables = _settled(networks, plain_state(networks))
  images = _targets(networks, variables)
  how = cogan.Inversion(steps=60, lr=0.05, restarts=3, seed=1)
  run = jax.jit(
    lambda x, h: cogan.invert(networks.generator, variables, x, 'A', h), static_argnums=1
  )
  _, start = run(images, cogan.Inversion(steps=0, restarts=3, seed=1))
  z, end = run(images, how)
  assert np.all(np.asarray(end) < 0.5 * np.asarray(start))
  z_again, end_again = run(images, how)
  np.testing.assert_array_equal(np.asarray(z), np.asarray(z_again))
  # Each image's result is its own: the same image alone gives the same z.
  z_alone, _ = run(images[1:2], how)
  np.testing.assert_allclose(np.asarray(z_alone[0]), np.asarray(z[1]), atol=1e-6)
  # Another seed starts elsewhere.
  z_other, _ = run(images, cogan.Inversion(steps=60, lr=0.05, restarts=3, seed=2))
  assert not np.allclose(np.asarray(z_other), np.asarray(z))


def test_translate_fn_renders_the_other_domain_at_any_size():
  config = tiny_config(**{'cogan.invert_steps': 3})
  method = methods.of_config(config)
  state = plain_state(step_lib.create_networks(config, 8))
  modules = method.generator_modules(config.model)
  x = np.random.RandomState(0).uniform(-1, 1, (2, 20, 28, 3)).astype(np.float32)
  for direction in ('AtoB', 'BtoA'):
    fn = method.translate_fn(modules, direction, None, config)
    out = fn(state.params['G'], x, state.batch_stats['G'])
    assert out.shape == x.shape and np.all(np.abs(np.asarray(out)) <= 1)
    np.testing.assert_array_equal(out, fn(state.params['G'], x, state.batch_stats['G']))


def test_parameters_that_do_not_fit_the_saved_config_are_named_in_one_line():
  from cyclegan_jax.deploy import inference  # pylint: disable=g-import-not-at-top

  config = tiny_config()
  params = plain_state(step_lib.create_networks(config, 8)).params['G']
  wider = methods.of_config(tiny_config(**{'cogan.ngf': 8})).generator_modules(
    config.model
  )['G']
  inference.check_generator_fits(
    methods.of_config(config).generator_modules(config.model)['G'],
    params,
    name='G',
    model_config=config.model,
    where='here',
  )
  with pytest.raises(inference.ArchitectureMismatchError) as e:
    inference.check_generator_fits(
      wider, params, name='G', model_config=config.model, where='here'
    )
  message = str(e.value)
  assert 'parameters' in message and 'differ in name or shape' in message
  assert 'netG' not in message and '\n' not in message


# --------------------------------------------------------------------------------------
# Config checks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
  'changes, words',
  [
    ({'crop_size': 24, 'load_size': 28}, r'config\.crop_size=24: must be a power of two'),
    ({'cogan.unshared_g': 4}, r'config\.cogan\.unshared_g=4: must be < 4'),
    ({'cogan.unshared_d': 5}, r'config\.cogan\.unshared_d=5: must be < 5'),
    ({'cogan.noise': 'cauchy'}, r"config\.cogan\.noise='cauchy'"),
    ({'cogan.invert_restarts': 0}, r'config\.cogan\.invert_restarts=0'),
  ],
)
def test_bad_cogan_fields_are_refused_in_one_line(changes, words):
  with pytest.raises(ValueError, match=f'^{words}') as e:
    config_checks.validate(tiny_config(**changes))
  assert '\n' not in str(e.value)


def test_cycle_gan_only_options_are_refused_in_one_line():
  with pytest.raises(
    ValueError, match=r'^loss\.r1_gamma=1\.0 does not apply to method=cogan'
  ):
    step_lib.create_networks(tiny_config(**{'loss.r1_gamma': 1.0}), 8)


def test_the_configs_pass_the_checks():
  from configs import cogan as cogan_config  # pylint: disable=g-import-not-at-top
  from configs import demo_cogan  # pylint: disable=g-import-not-at-top

  for config in (cogan_config.get_config(), demo_cogan.get_config()):
    config_checks.validate(config)
    assert config.method == 'cogan'


# --------------------------------------------------------------------------------------
# End to end: the loop, evaluation, translate, tiling and export
# --------------------------------------------------------------------------------------


@pytest.fixture(scope='module', name='trained')
def fixture_trained(tmp_path_factory):
  """A CoGAN workdir trained 2 steps on 4 devices."""
  from cyclegan_jax.train import loop  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp('cogan'))
  config = tiny_config(**{'eval.max_images': 3})
  state = loop.train_and_evaluate(config, workdir)
  return workdir, config, state


def _photo(tmp_path, size=(20, 30)) -> str:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  path = str(tmp_path / 'in' / 'photo.png')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  rng = np.random.RandomState(0)
  Image.fromarray((rng.rand(*size, 3) * 255).astype(np.uint8)).save(path)
  return path


@pytest.mark.slow
def test_the_checkpoint_holds_the_coupled_generator_and_samples(trained):
  from cyclegan_jax.deploy import inference  # pylint: disable=g-import-not-at-top

  workdir, _, state = trained
  restored = inference.restore(workdir)
  assert restored.method.name == 'cogan' and set(restored.params) == {'G'}
  assert_trees_close(restored.params['G'], jax.device_get(state.params['G']), 0, 0)
  assert restored.stats_for('G')
  assert os.path.isfile(os.path.join(workdir, 'samples', 'step_2.png'))


@pytest.mark.slow
def test_evaluation_scores_both_directions_and_reruns_match(trained):
  from cyclegan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

  workdir, config, _ = trained
  summary = evaluate.evaluate(config, workdir)
  assert {'AtoB/psnr', 'BtoA/psnr'} <= set(summary)
  assert not any('cycle_l1' in k for k in summary)  # No generator maps back.
  report = json.load(open(os.path.join(workdir, 'eval', 'step_2', 'metrics.json')))
  assert 'test_mode' not in report  # The inversion has one way to run.
  assert evaluate.evaluate(config, workdir) == summary


@pytest.mark.slow
def test_translate_keeps_the_size_and_reruns_match(trained, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.deploy import translate  # pylint: disable=g-import-not-at-top

  photo = _photo(tmp_path)
  outputs = []
  for direction in ('AtoB', 'BtoA', 'AtoB'):
    out = str(tmp_path / f'out_{len(outputs)}')
    written = translate.run(
      workdir=trained[0],
      input_path=photo,
      output=out,
      direction=direction,
      progress=False,
    )
    assert Image.open(written[0]).size == (30, 20)
    assert not os.path.exists(os.path.join(out, translate.TEST_MODE_FILE))
    outputs.append(np.asarray(Image.open(written[0])))
  np.testing.assert_array_equal(outputs[0], outputs[2])
  assert not np.array_equal(outputs[0], outputs[1])


@pytest.mark.slow
def test_tiling_and_export_are_refused_in_one_line(trained, tmp_path):
  from cyclegan_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.deploy import translate  # pylint: disable=g-import-not-at-top

  with pytest.raises(SystemExit) as e:
    translate.run(
      workdir=trained[0],
      input_path=_photo(tmp_path),
      output=str(tmp_path / 'out'),
      progress=False,
      tile=16,
    )
  assert '\n' not in str(e.value) and 'cannot be tiled' in str(e.value)
  with pytest.raises(SystemExit) as e:
    export.run(
      export.Request(
        workdir=trained[0],
        direction='AtoB',
        format='stablehlo',
        output=str(tmp_path / 'g.stablehlo'),
      )
    )
  assert '\n' not in str(e.value) and 'no generator to export' in str(e.value)
