"""Joining a multi-process (multi-host) run before anything touches JAX's devices.

One training run is one process per host (TPU VM pod worker, SLURM task, or a CPU process
standing in for a host in tests). Every process runs the same command; they meet at a
coordinator and from then on `jax.devices()` lists the devices of all of them.

`plan()` decides, purely from flags and the environment, whether and how to call
`jax.distributed.initialize`:

* explicit: `--coordinator_address`, `--num_processes`, `--process_id` (or the standard
  `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID` variables) with more
  than one process;
* auto: a SLURM job step with more than one task, an Open MPI job with more than one rank,
  or a TPU pod whose environment names more than one worker; JAX then detects everything
  itself (`jax.distributed.initialize()` with no arguments). On TPU VMs, whose worker
  list lives in the metadata server rather than the environment, pass
  `--distributed=on` (launch/tpu_vm.sh does);
* none: a single plain process, which needs nothing.

`initialize()` carries the plan out with bounded timeouts, so a run whose peer died
exits with an error instead of hanging.
"""

from __future__ import annotations

import dataclasses
import logging as std_logging
from typing import Mapping

from absl import logging

MODES = ('auto', 'on', 'off')
# Environment variables that carry the explicit settings (JAX reads the first itself too).
ENV_COORDINATOR = 'JAX_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'JAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'JAX_PROCESS_ID'


@dataclasses.dataclass(frozen=True)
class Plan:
  """What to do about the multi-process runtime.

  Attributes:
    kind: 'none' (single process: do nothing), 'explicit' (initialize with the given
      coordinator, count and id) or 'auto' (initialize with no arguments: JAX detects
      the cluster).
    reason: why, for the log.
    coordinator_address: host:port of process 0's coordinator ('explicit' only).
    num_processes: the number of processes ('explicit' only).
    process_id: this process, in [0, num_processes) ('explicit' only).
  """

  kind: str
  reason: str
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None


@dataclasses.dataclass(frozen=True)
class Timeouts:
  """Bounds of the distributed runtime, in seconds.

  Attributes:
    initialization: how long a process waits for all the others to join.
    heartbeat: after this long without a heartbeat a process is declared dead, and the
      coordinator makes every other process exit with an error.
    shutdown: how long a finishing process waits for the others at the final barrier.
  """

  initialization: int = 300
  heartbeat: int = 60
  shutdown: int = 120


def _int_or_none(value: str | int | None, name: str) -> int | None:
  if value is None or value == '':
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f'{name} must be an integer, got {value!r}.') from None


def _count(value: str | None) -> int:
  """The number in a count variable such as SLURM_NTASKS ('4', or '2(x2)'); 0 if unset."""
  if not value:
    return 0
  try:
    return int(value.split('(')[0])
  except ValueError:
    return 0


def _tpu_workers(env: Mapping[str, str]) -> int:
  """TPU workers named by the environment (GKE and multislice set these; 0 if none)."""
  for name in ('TPU_PROCESS_ADDRESSES', 'TPU_WORKER_HOSTNAMES'):
    if env.get(name):
      return len([h for h in env[name].split(',') if h.strip()])
  return 0


def _slurm_tasks(env: Mapping[str, str]) -> int:
  """Tasks of the SLURM job step this process is one of (0 outside a step).

  Only `srun` makes a step (and sets SLURM_STEP_NODELIST): the batch script itself is a
  single process even in an allocation of many tasks.
  """
  if not all(
    k in env
    for k in ('SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_PROCID', 'SLURM_LOCALID')
  ):
    return 0
  return _count(env.get('SLURM_STEP_NUM_TASKS') or env.get('SLURM_NTASKS'))


def plan(
  env: Mapping[str, str],
  *,
  mode: str = 'auto',
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> Plan:
  """Decides how (and whether) this process joins a multi-process run.

  Flags win over the `JAX_*` variables; explicit settings win over cluster detection.

  Args:
    env: the environment (`os.environ`).
    mode: 'auto' (decide from flags and env), 'on' (always initialize; JAX detects
      what is not given, e.g. on TPU VM pods) or 'off' (never: one process).
    coordinator_address: host:port of process 0, or None for `JAX_COORDINATOR_ADDRESS`.
    num_processes: the process count, or None for `JAX_NUM_PROCESSES`.
    process_id: this process's index, or None for `JAX_PROCESS_ID`.

  Returns:
    The plan.

  Raises:
    ValueError: on an unknown mode, a non-integer count or id, an id out of range, or
      explicit settings that name some of coordinator, count and id but not all (a
      process that guessed the rest would wait for a run that never forms).
  """
  if mode not in MODES:
    raise ValueError(f'distributed mode must be one of {MODES}, got {mode!r}.')
  if mode == 'off':
    return Plan('none', '--distributed=off')
  address = coordinator_address or env.get(ENV_COORDINATOR) or None
  count = _int_or_none(
    num_processes if num_processes is not None else env.get(ENV_NUM_PROCESSES),
    f'num_processes ({ENV_NUM_PROCESSES})',
  )
  index = _int_or_none(
    process_id if process_id is not None else env.get(ENV_PROCESS_ID),
    f'process_id ({ENV_PROCESS_ID})',
  )
  given = {'coordinator_address': address, 'num_processes': count, 'process_id': index}
  if count is not None and count < 1:
    raise ValueError(f'num_processes must be >= 1, got {count}.')
  if count is not None and index is not None and not 0 <= index < count:
    raise ValueError(f'process_id must be in [0, {count}), got {index}.')
  if all(v is not None for v in given.values()):
    if count == 1 and mode == 'auto':
      return Plan('none', 'num_processes is 1')
    return Plan(
      'explicit',
      f'{address}, process {index} of {count}',
      coordinator_address=address,
      num_processes=count,
      process_id=index,
    )
  if count is not None and count > 1 and any(v is None for v in given.values()):
    missing = ', '.join(f'--{k}' for k, v in given.items() if v is None)
    raise ValueError(
      f'num_processes is {count} but {missing} is not set (flags or '
      f'{ENV_COORDINATOR}/{ENV_NUM_PROCESSES}/{ENV_PROCESS_ID}): every process needs '
      'the coordinator address, the process count and its own index.'
    )
  if mode == 'on':
    return Plan('auto', '--distributed=on: JAX detects the cluster')
  if _slurm_tasks(env) > 1:
    return Plan(
      'auto', f'SLURM job {env["SLURM_JOB_ID"]} step with {_slurm_tasks(env)} tasks'
    )
  if _count(env.get('OMPI_COMM_WORLD_SIZE')) > 1:
    return Plan('auto', f'Open MPI job with {env["OMPI_COMM_WORLD_SIZE"]} ranks')
  if _tpu_workers(env) > 1:
    return Plan('auto', f'TPU pod with {_tpu_workers(env)} workers')
  return Plan('none', 'a single process')


def initialize(
  the_plan: Plan, *, cpu_collectives: str | None = None, timeouts: Timeouts = Timeouts()
) -> None:
  """Carries out `the_plan`; call before anything asks JAX for devices.

  Args:
    the_plan: from `plan()`.
    cpu_collectives: 'gloo' (or 'mpi') for cross-process collectives on CPU; None
      leaves JAX's setting (and `JAX_CPU_COLLECTIVES_IMPLEMENTATION`) alone.
    timeouts: the runtime's bounds.
  """
  import jax  # pylint: disable=g-import-not-at-top

  if cpu_collectives:
    jax.config.update('jax_cpu_collectives_implementation', cpu_collectives)
  if the_plan.kind == 'none':
    logging.debug('Single process (%s): no distributed runtime.', the_plan.reason)
    return
  logging.info(
    'Joining the distributed runtime (%s); timeouts: %s.', the_plan.reason, timeouts
  )
  kwargs = dict(
    initialization_timeout=timeouts.initialization,
    heartbeat_timeout_seconds=timeouts.heartbeat,
    shutdown_timeout_seconds=timeouts.shutdown,
  )
  if the_plan.kind == 'explicit':
    kwargs.update(
      coordinator_address=the_plan.coordinator_address,
      num_processes=the_plan.num_processes,
      process_id=the_plan.process_id,
    )
  jax.distributed.initialize(**kwargs)


def process_prefix(index: int, count: int) -> str:
  """The tag that starts every log line of a multi-process run."""
  return f'[process {index}/{count}] '


class _PrefixFormatter(std_logging.Formatter):
  """Wraps a formatter and prefixes each line it makes."""

  def __init__(self, inner: std_logging.Formatter, prefix: str):
    super().__init__()
    self._inner = inner
    self._prefix = prefix

  def format(self, record: std_logging.LogRecord) -> str:
    text = self._inner.format(record)
    return '\n'.join(self._prefix + line for line in text.split('\n'))


def install_log_prefix(index: int, count: int) -> None:
  """Makes absl's log lines (and Python logging's, which absl handles) name the process."""
  handler = logging.get_absl_handler()
  inner = handler.python_handler.formatter or logging.PythonFormatter()
  if isinstance(inner, _PrefixFormatter):
    inner = inner._inner  # pylint: disable=protected-access
  handler.setFormatter(_PrefixFormatter(inner, process_prefix(index, count)))
