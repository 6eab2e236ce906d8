"""Test session setup: 4 CPU devices and a shared compilation cache.

XLA reads the device-count flag once, when JAX initialises its backend, so it is set here
before any test module imports JAX. Single-device tests build one-device meshes
explicitly.
"""

import os
import tempfile

# LLVM's optimisations take most of XLA:CPU's compile time, and the tests' tiny programs
# run for milliseconds: level 0 halves the suite's CPU time.
os.environ.setdefault(
  'XLA_FLAGS',
  '--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0',
)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# The loop, evaluation and multi-process tests compile the same tiny programs again and
# again (also in subprocesses, which inherit this, and in the next tier's pytest run): a
# persistent cache pays once.
os.environ.setdefault(
  'JAX_COMPILATION_CACHE_DIR',
  os.path.join(tempfile.gettempdir(), 'cyclegan_jax_test_cache'),
)
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')


import pytest  # noqa: E402  # After the environment above, which JAX reads on import.


@pytest.fixture(scope='session')
def trained_workdir() -> str:
  """The tiny config's step-2 checkpoint, trained once per session by 4 devices."""
  from tests import tiny_run  # pylint: disable=g-import-not-at-top

  return tiny_run.trained_workdir()


def pytest_collection_modifyitems(items):
  """Tests that need a trained workdir are end-to-end: the slow tier."""
  for item in items:
    if 'trained_workdir' in getattr(item, 'fixturenames', ()):
      item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _absl_logger_level_restored():
  """Each test starts with absl's logger level as it found it.

  A library or an in-process command that sets absl's verbosity would otherwise hide the
  INFO records of every later test in the same worker, so results hung on test order.
  """
  import logging  # pylint: disable=g-import-not-at-top

  logger = logging.getLogger('absl')
  level = logger.level
  yield
  logger.setLevel(level)
