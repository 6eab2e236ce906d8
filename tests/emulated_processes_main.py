"""`cyclegan_jax.main` in one process, fed the global batches of an N-process run.

Each process of a multi-process run reads its own part of each domain, with its own
shuffle and augmentation seeds, and its per-host batch fills its devices' rows of the
global batch (process 0's devices come first in the mesh). A plain 1-process run therefore
sees other images than an N-process run of the same config. This driver builds, in one
process, exactly the global batches the N processes build together (the per-process
streams of `input_pipeline.create_train_dataset`, concatenated), so that a 1-process run
can be compared with an N-process run step for step:

  python tests/emulated_processes_main.py --emulate_processes=2 --config=... --workdir=...

Every other flag is `cyclegan_jax.main`'s.
"""

from absl import flags
import tensorflow as tf

from cyclegan_jax import main
from cyclegan_jax.data import input_pipeline

flags.DEFINE_integer(
  'emulate_processes', 2, 'Feed the global batches of a run with this many processes.'
)

_create_train_dataset = input_pipeline.create_train_dataset


def _emulated_train_dataset(config, *, process_index: int = 0, process_count: int = 1):
  """The global batch stream of `emulate_processes` processes, in one process."""
  if (process_index, process_count) != (0, 1):
    raise ValueError('The emulation runs as a single process.')
  n = flags.FLAGS.emulate_processes
  parts = [
    _create_train_dataset(config, process_index=i, process_count=n) for i in range(n)
  ]

  def concat(*batches):
    return {k: tf.concat([b[k] for b in batches], axis=0) for k in batches[0]}

  dataset = tf.data.Dataset.zip(tuple(ds for ds, _ in parts)).map(concat)
  return dataset, parts[0][1]


if __name__ == '__main__':
  input_pipeline.create_train_dataset = _emulated_train_dataset
  main.cli()
