"""The method interface: CycleGAN trains as before it, and a second method plugs in.

The CycleGAN reference values were recorded from the code before the interface existed
(tests/data/make_method_golden.py); they must be reproduced here to float noise. A
one-way toy GAN (tests/one_way_gan.py), registered with one line, goes through the
shared loop, checkpoints, evaluation and translate.
"""

import json
import os

import jax
import numpy as np
from PIL import Image
import pytest

from cyclegan_jax import methods
from cyclegan_jax.cli import config_checks
from cyclegan_jax.deploy import inference
from cyclegan_jax.deploy import translate
from cyclegan_jax.evaluation import evaluate
from cyclegan_jax.train import checkpoints
from cyclegan_jax.train import loop as train
from cyclegan_jax.train import step as step_lib
from tests import one_way_gan
from tests import tiny_run
from tests.data import make_method_golden as golden

GOLDEN = os.path.join(os.path.dirname(__file__), 'data', 'cycle_gan_golden.npz')


def test_unknown_method_is_refused_in_one_line_naming_the_known_ones():
  config = tiny_run.tiny_config()
  config.method = 'stargan'
  with pytest.raises(ValueError) as e:
    config_checks.validate(config)
  known = list(methods.METHODS)  # Every registered method, in registry order.
  assert known[:2] == ['cycle_gan', 'pix2pix']
  assert str(e.value) == (
    "config.method='stargan': must be one of " + ', '.join(map(repr, known)) + '.'
  )
  with pytest.raises(ValueError) as e:
    methods.get('stargan')
  assert str(e.value).startswith("Unknown method 'stargan'")
  assert str(e.value).endswith('one of ' + ', '.join(known) + '.')


def test_configs_without_a_method_are_cycle_gan():
  assert methods.name_of({'model': {}}) == 'cycle_gan'  # Checkpoints saved before it.
  assert methods.get(methods.name_of({})).generators == ('G_A', 'G_B')
  assert tiny_run.tiny_config().method == 'cycle_gan'


def _outputs(networks, params, critic_stats, images) -> dict[str, np.ndarray]:
  """Each network's output on `images` (a critic with its spectral-norm stats, if any)."""
  out = {}
  for name, p in params.items():
    if name.startswith('G'):
      out[name] = networks.generator_for(name).apply({'params': p}, images)
    else:
      variables = {
        'params': p,
        **({'batch_stats': critic_stats[name]} if critic_stats else {}),
      }
      out[name] = networks.discriminator.apply(variables, images)
  return jax.tree.map(np.asarray, out)


def _unflat(prefix: str, arrays: dict[str, np.ndarray]) -> dict:
  tree = {}
  for key, value in arrays.items():
    if key.startswith(prefix + '/'):
      *parents, leaf = key[len(prefix) + 1 :].split('/')
      node = tree
      for part in parents:
        node = node.setdefault(part, {})
      node[leaf] = value
  return tree


@pytest.mark.slow
@pytest.mark.parametrize('variant', ['paper', 'switches'])
def test_cycle_gan_trains_as_before_the_interface(variant, tmp_path):
  """Each network's function after 3 steps is the recorded one, to float noise.

  Parameters cannot be compared bit for bit across CPUs: XLA's vector code differs, and
  Adam turns the resulting last-bit gradient noise into ±lr on near-zero gradients (the
  biases before instance norms flip sign). So the outputs are compared: the recorded and
  the new network may differ by 5% of what the 3 steps changed (float noise is under 1%;
  λ_cyc 10 -> 9 alone moves the generators by 30%).
  """
  config = golden.golden_config(variant)
  state = train.train_and_evaluate(config, str(tmp_path))
  networks = step_lib.create_networks(config, 8)
  mesh = jax.make_mesh((1,), ('data',), devices=jax.devices()[:1])
  shape = (config.crop_size, config.crop_size, config.model.input_nc)
  init = step_lib.create_train_state(
    networks, seed=config.seed, mesh=mesh, image_shape=shape, pool_size=0
  )
  host = lambda tree: jax.tree.map(
    lambda a: np.asarray(a.addressable_shards[0].data), tree
  )
  with np.load(GOLDEN) as data:
    recorded = {k: data[k] for k in data.files}
  got = {'params': host(state.params), 'ema': host(state.ema)}
  want = {f: _unflat(f'{variant}/{f}', recorded) for f in got}
  assert jax.tree.structure(want) == jax.tree.structure(got)
  stats = host(state.critic_stats)
  images = np.random.RandomState(0).uniform(-1, 1, (4, *shape)).astype(np.float32)
  before = _outputs(networks, host(init.params), host(init.critic_stats), images)
  for field in ('params', 'ema'):
    out_got = _outputs(networks, got[field], stats, images)
    out_want = _outputs(networks, want[field], stats, images)
    for name, w in out_want.items():
      moved = np.linalg.norm(w - before[name])
      assert moved > 0, f'{field}/{name}'
      gap = np.linalg.norm(out_got[name] - w)
      assert gap <= 0.05 * moved, f'{field}/{name}: {gap / moved:.3f} of the update'


@pytest.fixture(scope='module', name='one_way')
def fixture_one_way(tmp_path_factory):
  """A workdir of the toy method trained 2 steps on the tiny config (4 devices)."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setitem(methods.METHODS, one_way_gan.NAME, one_way_gan.__name__)  # The line.
    config = tiny_run.tiny_config()
    config.method = one_way_gan.NAME
    workdir = str(tmp_path_factory.mktemp('one_way'))
    state = train.train_and_evaluate(config, workdir)
    yield workdir, config, state


def _image(tmp_path) -> str:
  path = str(tmp_path / 'photo.png')
  Image.fromarray(np.full((20, 24, 3), 120, np.uint8)).save(path)
  return path


@pytest.mark.slow
def test_a_second_method_trains_and_checkpoints_through_the_shared_loop(one_way):
  workdir, _, state = one_way
  assert int(jax.device_get(state.step)) == 2 and set(state.params) == {'G', 'D'}
  manager = checkpoints.create_manager(workdir, create=False)
  assert manager.all_steps() == [2]
  assert checkpoints.saved_config(manager, 2)['method'] == one_way_gan.NAME
  manager.close()
  assert os.path.isfile(os.path.join(workdir, train.SAMPLES_DIR, 'step_2.png'))
  restored = inference.restore(workdir)
  assert restored.method is one_way_gan.METHOD and set(restored.params) == {'G'}
  jax.tree.map(
    np.testing.assert_array_equal, restored.params['G'], jax.device_get(state.params['G'])
  )


@pytest.mark.slow
def test_a_second_method_evaluates_and_translates_its_one_direction(one_way, tmp_path):
  workdir, config, _ = one_way
  summary = evaluate.evaluate(config, workdir)
  assert summary and all(k.startswith('AtoB/') for k in summary)
  assert 'AtoB/psnr' in summary and 'AtoB/cycle_l1' not in summary  # No way back.
  out_dir = os.path.join(workdir, evaluate.EVAL_DIR, 'step_2')
  report = json.loads(open(os.path.join(out_dir, 'metrics.json')).read())
  assert list(report['num_images']) == ['AtoB']
  written = translate.run(
    workdir=workdir,
    input_path=_image(tmp_path),
    output=str(tmp_path / 'out'),
    direction='AtoB',
    progress=False,
  )
  assert [os.path.basename(p) for p in written] == ['photo.png']
  assert Image.open(written[0]).size == (24, 20)


@pytest.mark.slow
def test_a_direction_the_method_lacks_is_refused_in_one_line(one_way, tmp_path):
  workdir = one_way[0]
  with pytest.raises(SystemExit) as e:
    translate.run(
      workdir=workdir,
      input_path=_image(tmp_path),
      output=str(tmp_path / 'out'),
      direction='BtoA',
      progress=False,
    )
  message = str(e.value)
  assert 'one_way_gan model translates AtoB only, not BtoA' in message
  assert '--direction=AtoB' in message and '\n' not in message
  assert not os.path.exists(tmp_path / 'out' / 'photo.png')


@pytest.mark.slow
def test_resuming_with_another_method_is_refused_in_one_line(one_way):
  workdir = one_way[0]
  with pytest.raises(train.NetworkMismatchError) as e:
    train.train_and_evaluate(tiny_run.tiny_config(), workdir)
  assert str(e.value).startswith(
    "method: the command line says 'cycle_gan' but the checkpoint (step 2"
  )
  assert "trained with 'one_way_gan'; pass --config.method=one_way_gan" in str(e.value)
