"""Test session setup: 4 CPU devices for the data-parallel tests.

XLA reads the flag once, when JAX initialises its backend, so it is set here before any
test module imports JAX. Single-device tests build one-device meshes explicitly.
"""

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
