"""One tiny trained workdir shared by the evaluation and translation tests.

Training compiles slowly on small CPUs, so the first test that asks trains once (4
virtual devices, 2 steps) and every later one, in any test module, reuses the result.
"""

import atexit
import functools
import shutil
import tempfile

from configs import default
from cyclegan_jax import train

NGF = 4


def tiny_config():
  """A config that trains in seconds: 16 px crops, resnet_6blocks at ngf 4, 2 steps."""
  config = default.get_config()
  config.dataset = 'synthetic:colors'
  config.load_size = 20
  config.crop_size = 16
  config.batch_size = 4
  config.pool_size = 2
  config.num_train_steps = 2
  config.checkpoint_every_steps = 2
  config.sample_every_steps = 2
  config.log_every_steps = 1
  config.num_sample_images = 2
  config.model.netG = 'resnet_6blocks'
  config.model.ngf = NGF
  config.model.ndf = 4
  config.model.netD = 'n_layers'  # 16 px is too small for the 3-layer PatchGAN.
  config.model.n_layers_D = 2
  config.eval.max_images = 6
  return config


@functools.lru_cache(maxsize=None)
def trained_workdir() -> str:
  """A workdir holding the step-2 checkpoint of `tiny_config()`, written by 4 devices."""
  workdir = tempfile.mkdtemp(prefix='cyclegan_tiny_')
  atexit.register(shutil.rmtree, workdir, ignore_errors=True)
  train.train_and_evaluate(tiny_config(), workdir)
  return workdir
