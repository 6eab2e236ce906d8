"""One tiny trained workdir shared by the evaluation and translation tests.

Training compiles slowly on small CPUs, so the first test that asks trains once (4
virtual devices, 2 steps) and every later one, in any test module, reuses the result.
"""

import atexit
import functools
import shutil
import tempfile

from configs import tiny
from cyclegan_jax.train import loop as train

NGF = tiny.get_config().model.ngf


def tiny_config():
  """The shared tiny config (configs/tiny.py): 16 px crops, resnet_6blocks at ngf 4."""
  return tiny.get_config()


@functools.cache
def trained_workdir() -> str:
  """A workdir holding the step-2 checkpoint of `tiny_config()`, written by 4 devices."""
  workdir = tempfile.mkdtemp(prefix='cyclegan_tiny_')
  atexit.register(shutil.rmtree, workdir, ignore_errors=True)
  train.train_and_evaluate(tiny_config(), workdir)
  return workdir
