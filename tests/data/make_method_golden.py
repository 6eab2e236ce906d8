"""Writes tests/data/cycle_gan_golden.npz: CycleGAN's state after 3 training steps.

  python tests/data/make_method_golden.py

Recorded from the code before the method interface existed, so that test_methods.py can
check that the method-generic loop trains CycleGAN as before (to float noise). Two runs of
the tiny config through the real `train_and_evaluate` on 4 virtual CPU devices, in the
tests' environment (conftest.py): the paper's losses ('paper'), and every switch of the
step on at once ('switches': EMA, the patch loss with banks, DiffAugment, R1, spectral
norm, TTUR, no pool history), which covers the code paths the interface moved.
"""

import os
import sys
import tempfile

if __name__ == '__main__':  # test_methods.py imports `golden_config` and `flat`.
  # The tests' environment (conftest.py): XLA's optimisation level changes float results.
  os.environ['XLA_FLAGS'] = (
    '--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0'
  )
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..'))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import tiny  # noqa: E402
from cyclegan_jax.train import loop  # noqa: E402

STEPS = 3
OUT = os.path.join(os.path.dirname(__file__), 'cycle_gan_golden.npz')


def golden_config(variant: str):
  """The tiny config trained for STEPS steps; 'switches' turns every step option on."""
  config = tiny.get_config()
  config.num_train_steps = STEPS
  config.checkpoint_every_steps = STEPS
  config.sample_every_steps = STEPS
  if variant == 'switches':
    config.ema.decay = 0.9
    config.loss.lambda_swd = 0.5
    config.loss.swd_bank = 2
    config.loss.swd_projections = 8
    config.loss.swd_samples = 64
    config.loss.r1_gamma = 1.0
    config.augment.policy = 'color,translation'
    config.model.spectral_norm_D = True
    config.optim.lr_D_scale = 2.0
    config.pool_size = 0
  return config


def flat(prefix: str, tree) -> dict[str, np.ndarray]:
  """{'prefix/a/b': array} for every leaf of `tree` (a replicated global array)."""
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
    prefix + '/' + '/'.join(str(getattr(k, 'key', k)) for k in path): np.asarray(
      leaf.addressable_shards[0].data
    )
    for path, leaf in leaves
  }


def main() -> None:
  arrays = {}
  for variant in ('paper', 'switches'):
    with tempfile.TemporaryDirectory() as workdir:
      state = loop.train_and_evaluate(golden_config(variant), workdir)
    arrays.update(flat(f'{variant}/params', state.params))
    if state.ema:
      arrays.update(flat(f'{variant}/ema', state.ema))
  np.savez_compressed(OUT, **arrays)
  print(f'Wrote {len(arrays)} arrays to {OUT}.')


if __name__ == '__main__':
  main()
