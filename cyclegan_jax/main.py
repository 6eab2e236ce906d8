"""Entry point: `python -m cyclegan_jax.main --config=configs/demo.py --workdir=DIR`.

Trains (and resumes) with `--mode=train`; `--mode=eval` evaluates the latest (or
`--config.eval.step`) checkpoint of the workdir. Any config field can be overridden with
`--config.FIELD=VALUE`; a misspelt field is an error.
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import tensorflow as tf

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, summaries and the config.')
flags.DEFINE_enum('mode', 'train', ['train', 'eval'],
                  'train: train (resuming from the workdir); eval: evaluate a checkpoint.')
config_flags.DEFINE_config_file(
    'config', None, 'An ml_collections config file, e.g. configs/demo.py.',
    lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def log_topology(batch_size: int) -> None:
  devices, processes = jax.device_count(), jax.process_count()
  logging.info('JAX %s: process %d of %d, %d local / %d global devices: %s',
               jax.__version__, jax.process_index(), processes, jax.local_device_count(),
               devices, jax.local_devices())
  logging.info('Batch: %d global, %s per host, %s per device.', batch_size,
               batch_size / processes, batch_size / devices)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  # tf.data only: keep TensorFlow off the accelerators JAX uses.
  tf.config.set_visible_devices([], 'GPU')
  tf.config.set_visible_devices([], 'TPU')
  config = FLAGS.config
  log_topology(config.batch_size)

  # Imported here so that `--help` and flag errors stay fast.
  from cyclegan_jax import train  # pylint: disable=g-import-not-at-top
  if FLAGS.mode == 'train':
    try:
      train.check_batch_size(config.batch_size, jax.device_count(), jax.process_count())
    except ValueError as e:
      raise app.UsageError(str(e)) from None
    train.train_and_evaluate(config, FLAGS.workdir)
  else:
    from cyclegan_jax import evaluate  # pylint: disable=g-import-not-at-top
    evaluate.evaluate(config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
