"""Entry point: `python -m cyclegan_jax.main --config=configs/demo.py --workdir=DIR`.

Installed, the same command is `cyclegan-jax-train` (and `cyclegan-jax-eval`, which
defaults to --mode=eval); exit codes and shared flags: docs/cli.md.

Trains (and resumes) with `--mode=train`; `--mode=eval` evaluates the latest (or
`--config.eval.step`) checkpoint of the workdir. Any config field can be overridden with
`--config.FIELD=VALUE`; a misspelt field is an error.

Several processes (hosts of a pod, SLURM tasks, CPU processes in tests) run the same
command; `cyclegan_jax.train.distributed` joins them before JAX sees any device (see launch/).
"""

import os
import sys
from typing import Sequence

from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import numpy as np

from cyclegan_jax.cli import app
from cyclegan_jax.cli import config_checks
from cyclegan_jax.cli import console
from cyclegan_jax.cli import flags as cli_flags
from cyclegan_jax.evaluation import eval_dirs
from cyclegan_jax.train import distributed

FLAGS = flags.FLAGS
MODES = ('train', 'eval')


def define_flags() -> None:
  """The command's flags (defined by its entry point only, never at import)."""
  cli_flags.define_workdir('Directory for checkpoints, summaries and the config.')
  flags.DEFINE_enum(
    'mode',
    'train',
    list(MODES),
    'train: train (resuming from the workdir); eval: evaluate a checkpoint.',
  )
  config_flags.DEFINE_config_file(
    'config',
    None,
    'An ml_collections config file, e.g. configs/demo.py.',
    lock_config=True,
  )
  flags.mark_flags_as_required(['config'])

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


def main(argv: Sequence[str]) -> app.Outcome:
  """Trains or evaluates as --mode says; the result in one line."""
  app.no_arguments(argv)
  console.tensorflow_for_data()
  config = FLAGS.config
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
    step_lib.check_batch_size(config.batch_size, jax.device_count(), jax.process_count())
    state = train.train_and_evaluate(config, FLAGS.workdir)
    # The step is replicated: every process reads it from its own first shard.
    step = int(np.asarray(state.step.addressable_shards[0].data))
    return train_outcome(FLAGS.workdir, step, config)
  from cyclegan_jax.evaluation import evaluate  # pylint: disable=g-import-not-at-top

  step, summary = evaluate.evaluate_checkpoint(config, FLAGS.workdir)
  return eval_outcome(FLAGS.workdir, step, summary, config.eval.get('split', 'test'))


def train_outcome(workdir: str, step: int, config) -> app.Outcome:
  """The training command's result: where its checkpoints are, at which step.

  A run stopped by a signal (saved first) says so; `finished` is None where the steps
  come from the epochs, which the loop counts.
  """
  planned = config.num_train_steps
  stopped = 0 < planned and step < planned
  line = (
    f'Stopped at step {step} of {planned}; run the same command to resume.'
    if stopped
    else f'Trained to step {step}: checkpoints in {os.path.join(workdir, "checkpoints")}.'
  )
  return app.Outcome(
    line,
    {
      'command': 'train',
      'workdir': workdir,
      'step': step,
      'finished': None if planned <= 0 else not stopped,
    },
  )


def eval_outcome(
  workdir: str, step: int, summary: dict[str, float], split: str = 'test'
) -> app.Outcome:
  """The evaluation command's result: the means and where the report is."""
  out_dir = eval_dirs.path(workdir, step, split)
  shown = [k for k in summary if k.endswith(('/psnr', '/ssim'))] or sorted(summary)[:4]
  means = ', '.join(f'{k} {summary[k]:.4g}' for k in shown)
  return app.Outcome(
    f'Evaluated step {step}{": " + means if means else ""}; report in {out_dir}.',
    {
      'command': 'eval',
      'workdir': workdir,
      'step': step,
      'split': split,
      'output': out_dir,
      'metrics': {k: float(v) for k, v in summary.items()},
    },
  )


def _prog(argv: Sequence[str]) -> str:
  """'eval' when the command line asks for --mode=eval, else 'train'."""
  for i, arg in enumerate(argv):
    if arg == '--mode=eval' or (arg == '--mode' and argv[i + 1 : i + 2] == ['eval']):
      return 'eval'
  return 'train'


def cli(argv: Sequence[str] | None = None) -> None:
  """`cyclegan-jax-train` and `python -m cyclegan_jax.main`."""
  argv = list(sys.argv if argv is None else argv)
  app.run(main, prog=_prog(argv), define_flags=define_flags, argv=argv)


def cli_eval() -> None:
  """`cyclegan-jax-eval`: --mode=eval unless the command line says otherwise."""
  cli([sys.argv[0], '--mode=eval', *sys.argv[1:]])


if __name__ == '__main__':
  cli()
