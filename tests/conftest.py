"""Test session setup: 4 CPU devices for the data-parallel tests.

XLA reads the flag once, when JAX initialises its backend, so it is set here before any
test module imports JAX. Single-device tests build one-device meshes explicitly.
"""

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tempfile  # pylint: disable=g-import-not-at-top

# The loop, evaluation and multi-process tests compile the same tiny step again and
# again (also in subprocesses, which inherit this): a persistent cache pays once.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      tempfile.mkdtemp(prefix='cyclegan_jax_test_cache_'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '-1')
