"""model.remat: the same parameters (names and values) and training, less memory kept."""

import dataclasses

import jax
import numpy as np
import pytest

from configs import tiny
from cyclegan_jax.methods import cycle_gan
from cyclegan_jax.nets import models
from cyclegan_jax.train import step as step_lib

IMAGE = (16, 16, 3)
LR = 2e-4


def _networks(remat: bool) -> cycle_gan.Networks:
  config = tiny.get_config()
  config.pool_size = 0
  config.model.remat = remat
  networks = step_lib.create_networks(config, epoch_length=10)
  assert networks.generator.remat is remat  # generator_from_config reads the field.
  # Two blocks keep the compile short and still stack blocks in the scan.
  return dataclasses.replace(
    networks, generator=networks.generator.clone(num_blocks=2, remat=remat)
  )


def _train(remat: bool, steps: int = 3):
  networks = _networks(remat)
  mesh = jax.make_mesh((1,), ('data',), devices=jax.devices()[:1])
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=IMAGE, pool_size=0
  )
  initial = jax.device_get(state.params)
  step = step_lib.make_parallel_train_step(networks, mesh, state)
  rng = np.random.default_rng(0)
  data = [
    {k: rng.uniform(-1, 1, (2, *IMAGE)).astype(np.float32) for k in 'AB'}
    for _ in range(steps)
  ]
  for batch in step_lib.device_batches(data, mesh):
    state, _ = step(state, batch)
  return initial, jax.device_get(state.params)


def _pre_norm_bias(path) -> bool:
  """A conv bias followed by InstanceNorm: its gradient is float noise, which Adam turns
  into steps of up to ±lr, so it is only compared within that bound (the generators'
  convs but the head; the tiny 2-layer critics' conv_1 and conv_2)."""
  keys = [p.key for p in path]
  if keys[-1] != 'bias':
    return False
  if keys[0].startswith('G'):
    return keys[1] != 'head'
  return keys[1] in ('conv_1', 'conv_2')


@pytest.mark.slow  # Compiles several steps: 4 s or more on 2 cores.
def test_remat_params_equal_the_plain_run_after_three_steps():
  # XLA:CPU merges the recomputation back into the forward pass (docs/memory.md), so on
  # CPU this checks the wiring and the tree; on a GPU or TPU the recomputed gradients.
  initial_plain, plain = _train(False)
  initial_remat, remat = _train(True)
  # Same tree (checkpoints are interchangeable) and the same initial values.
  assert jax.tree.structure(plain) == jax.tree.structure(remat)
  jax.tree.map(np.testing.assert_array_equal, initial_plain, initial_remat)

  def check(path, a, b):
    if _pre_norm_bias(path):
      np.testing.assert_array_less(np.abs(a - b), 3 * 2 * LR + 1e-7)
    else:
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=str(path))

  jax.tree.map_with_path(check, plain, remat)


def test_remat_block_has_the_plain_blocks_parameter_names():
  x = np.zeros((1, 16, 16, 3), np.float32)
  plain = models.ResnetGenerator(ngf=4, num_blocks=2)
  remat = plain.clone(remat=True)
  shapes = lambda m: jax.tree.map(
    lambda a: a.shape, jax.eval_shape(m.init, jax.random.key(0), x)
  )
  assert shapes(plain) == shapes(remat)
