"""Entry point: `python -m cyclegan_jax.main --config=configs/demo.py --workdir=DIR`.

Trains (and resumes) with `--mode=train`; `--mode=eval` evaluates the latest (or
`--config.eval.step`) checkpoint of the workdir. Any config field can be overridden with
`--config.FIELD=VALUE`; a misspelt field is an error.

Several processes (hosts of a pod, SLURM tasks, CPU processes in tests) run the same
command; `cyclegan_jax.train.distributed` joins them before JAX sees any device (see launch/).
"""

import os

from cyclegan_jax.cli import console  # pylint: disable=g-bad-import-order  # Before TF and JAX.

console.import_tensorflow()

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from cyclegan_jax.cli import config_checks
from cyclegan_jax.cli import errors
from cyclegan_jax.train import distributed

FLAGS = flags.FLAGS
flags.DEFINE_string(
  'workdir', None, 'Directory for checkpoints, summaries and the config.'
)
flags.DEFINE_enum(
  'mode',
  'train',
  ['train', 'eval'],
  'train: train (resuming from the workdir); eval: evaluate a checkpoint.',
)
config_flags.DEFINE_config_file(
  'config', None, 'An ml_collections config file, e.g. configs/demo.py.', lock_config=True
)
flags.mark_flags_as_required(['config', 'workdir'])

# Multi-process runs. Defaults come from the standard JAX_* variables; SLURM, Open MPI
# and TPU pods (with --distributed=on on TPU VMs) need none of them.
flags.DEFINE_enum(
  'distributed',
  'auto',
  list(distributed.MODES),
  'auto: join a multi-process run when flags, JAX_* variables, SLURM, '
  'Open MPI or a TPU pod say so; on: always call '
  'jax.distributed.initialize (JAX detects the rest); off: one process.',
)
flags.DEFINE_string(
  'coordinator_address',
  None,
  'host:port of process 0 (default: $JAX_COORDINATOR_ADDRESS).',
)
flags.DEFINE_integer(
  'num_processes', None, 'Number of processes (default: $JAX_NUM_PROCESSES).'
)
flags.DEFINE_integer(
  'process_id', None, 'This process, 0..num_processes-1 (default: $JAX_PROCESS_ID).'
)
flags.DEFINE_enum(
  'cpu_collectives',
  None,
  ['gloo', 'mpi'],
  'Cross-process collectives on CPU (gloo for CPU multi-process runs).',
)
flags.DEFINE_integer(
  'heartbeat_timeout_s',
  distributed.Timeouts.heartbeat,
  'A process silent this long is declared dead and every other '
  'process exits with an error.',
)
flags.DEFINE_integer(
  'initialization_timeout_s',
  distributed.Timeouts.initialization,
  'How long processes wait for each other to join.',
)
flags.DEFINE_integer(
  'shutdown_timeout_s',
  distributed.Timeouts.shutdown,
  'How long a finished process waits for the others to finish.',
)


def init_distributed() -> None:
  """Joins a multi-process run if this is one; names the process in every log line."""
  try:
    the_plan = distributed.plan(
      os.environ,
      mode=FLAGS.distributed,
      coordinator_address=FLAGS.coordinator_address,
      num_processes=FLAGS.num_processes,
      process_id=FLAGS.process_id,
    )
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  if the_plan.kind == 'explicit':  # Known already: name the process from the first line.
    distributed.install_log_prefix(the_plan.process_id, the_plan.num_processes)
  distributed.initialize(
    the_plan,
    cpu_collectives=FLAGS.cpu_collectives,
    timeouts=distributed.Timeouts(
      initialization=FLAGS.initialization_timeout_s,
      heartbeat=FLAGS.heartbeat_timeout_s,
      shutdown=FLAGS.shutdown_timeout_s,
    ),
  )
  if jax.process_count() > 1:
    distributed.install_log_prefix(jax.process_index(), jax.process_count())


def log_setup(config_path: str, workdir: str, batch_size: int) -> None:
  """The run's setup in two lines: where it runs, and what it reads and writes."""
  devices, processes = jax.device_count(), jax.process_count()
  where = (
    f'{devices} {jax.devices()[0].platform.upper()} device(s) in {processes} process(es)'
  )
  if processes > 1:
    where += f', {jax.local_device_count()} in process {jax.process_index()}'
  logging.info(
    'JAX %s on %s; batch %d global = %s per device.',
    jax.__version__,
    where,
    batch_size,
    f'{batch_size / devices:g}',
  )
  logging.info(
    'Config %s; workdir %s.',
    config_path,
    os.path.abspath(workdir) if '://' not in workdir else workdir,
  )


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  console.install()
  console.tensorflow_for_data()
  config = FLAGS.config
  with errors.one_line(''):
    # Every field checked before JAX, TF or Orbax sees one: one line naming the field.
    config_checks.validate(config)
    init_distributed()  # Before anything asks JAX for devices.
    log_setup(
      config_flags.get_config_filename(FLAGS['config']), FLAGS.workdir, config.batch_size
    )

    # Imported here so that `--help` and flag errors stay fast.
    from cyclegan_jax.train import loop as train  # pylint: disable=g-import-not-at-top
    from cyclegan_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top

    if FLAGS.mode == 'train':
      step_lib.check_batch_size(
        config.batch_size, jax.device_count(), jax.process_count()
      )
      # Errors a user can meet (missing data or checkpoint, bad config value, a
      # damaged checkpoint, an unwritable workdir, a diverged run) end in their
      # one-line message; --verbosity=1 logs the traceback too.
      train.train_and_evaluate(config, FLAGS.workdir)
    else:
      from cyclegan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

      evaluate.evaluate(config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
