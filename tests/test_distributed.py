"""Multi-process runs: the launch decision, and real 2-process CPU training with gloo.

The subprocess tests run `python -m cyclegan_jax.main` as two processes × two CPU devices
(as two hosts of a pod would run it) and check, against one process × four devices, that

* the networks after 3 steps on the same global batches are the same (see
  `assert_same_networks` for what "the same" can mean after Adam steps);
* the checkpoint the two processes wrote restores in one process (for evaluation) and
  training resumes from it in one process;
* killing one process mid-run makes the other exit with an error within a bound, and
  restarting both (with launch/local_multiprocess.sh) resumes from the last checkpoint.

The same global batch: each process reads its own part of each domain, so a plain
1-process run sees other images. The 1-process runs therefore use
`tests/emulated_processes_main.py`, which is `main` fed with the 2-process run's global
batches (both per-process streams, concatenated in mesh order).
"""

from __future__ import annotations

import dataclasses
import logging as std_logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

from absl import logging
import jax
import ml_collections
import numpy as np
import pytest

from cyclegan_jax.nets import models
from cyclegan_jax.train import checkpoints
from cyclegan_jax.train import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --------------------------------------------------------------------------------------
# The launch decision (pure)
# --------------------------------------------------------------------------------------

SLURM_STEP = {
  'SLURM_JOB_ID': '77',
  'SLURM_STEP_NODELIST': 'node[1-2]',
  'SLURM_NTASKS': '2',
  'SLURM_PROCID': '1',
  'SLURM_LOCALID': '0',
}


def test_plan_single_process_does_nothing():
  assert distributed.plan({}).kind == 'none'
  assert distributed.plan({'SLURM_JOB_ID': '1', 'SLURM_NTASKS': '1'}).kind == 'none'
  assert distributed.plan({**SLURM_STEP, 'SLURM_NTASKS': '1'}).kind == 'none'
  assert distributed.plan({'TPU_WORKER_HOSTNAMES': 'w0'}).kind == 'none'
  assert distributed.plan({'OMPI_COMM_WORLD_SIZE': '1'}).kind == 'none'


def test_plan_explicit_from_env_and_flags():
  env = {
    'JAX_COORDINATOR_ADDRESS': 'h0:1234',
    'JAX_NUM_PROCESSES': '4',
    'JAX_PROCESS_ID': '3',
  }
  p = distributed.plan(env)
  assert (p.kind, p.coordinator_address, p.num_processes, p.process_id) == (
    'explicit',
    'h0:1234',
    4,
    3,
  )
  # Flags win over the variables, one by one.
  p = distributed.plan(env, coordinator_address='h9:1', process_id=0)
  assert (p.kind, p.coordinator_address, p.num_processes, p.process_id) == (
    'explicit',
    'h9:1',
    4,
    0,
  )
  p = distributed.plan(
    {}, coordinator_address='127.0.0.1:5', num_processes=2, process_id=1
  )
  assert (p.kind, p.num_processes, p.process_id) == ('explicit', 2, 1)
  # Explicit settings win over a detected cluster.
  assert distributed.plan({**SLURM_STEP, **env}).kind == 'explicit'
  # One process: nothing to join (unless forced).
  assert (
    distributed.plan({}, coordinator_address='h:1', num_processes=1, process_id=0).kind
    == 'none'
  )
  assert (
    distributed.plan(
      {}, mode='on', coordinator_address='h:1', num_processes=1, process_id=0
    ).kind
    == 'explicit'
  )


def test_plan_detects_clusters():
  assert distributed.plan(SLURM_STEP).kind == 'auto'
  assert 'SLURM' in distributed.plan(SLURM_STEP).reason
  # srun's step task count wins over the allocation's.
  assert (
    distributed.plan(
      {**SLURM_STEP, 'SLURM_NTASKS': '2', 'SLURM_STEP_NUM_TASKS': '1'}
    ).kind
    == 'none'
  )
  # The batch script itself (no job step) is one process, whatever the allocation.
  batch_script = {k: v for k, v in SLURM_STEP.items() if k != 'SLURM_STEP_NODELIST'}
  assert distributed.plan(batch_script).kind == 'none'
  assert distributed.plan({'OMPI_COMM_WORLD_SIZE': '8'}).kind == 'auto'
  assert distributed.plan({'TPU_WORKER_HOSTNAMES': 'w0,w1,w2,w3'}).kind == 'auto'
  assert distributed.plan({'TPU_PROCESS_ADDRESSES': 'a:1,b:1'}).kind == 'auto'
  # TPU VMs keep the worker list in the metadata server: --distributed=on.
  assert distributed.plan({}, mode='on').kind == 'auto'


def test_plan_off_wins():
  env = {
    'JAX_COORDINATOR_ADDRESS': 'h0:1',
    'JAX_NUM_PROCESSES': '2',
    'JAX_PROCESS_ID': '0',
  }
  assert distributed.plan({**SLURM_STEP, **env}, mode='off').kind == 'none'


@pytest.mark.parametrize(
  'kwargs, env, message',
  [
    (dict(num_processes=2), {}, '--coordinator_address, --process_id'),
    (dict(num_processes=2, process_id=0), {}, '--coordinator_address'),
    ({}, {'JAX_NUM_PROCESSES': '2', 'JAX_COORDINATOR_ADDRESS': 'h:1'}, '--process_id'),
    (dict(num_processes=2, process_id=2, coordinator_address='h:1'), {}, r'\[0, 2\)'),
    (dict(num_processes=0), {}, '>= 1'),
    ({}, {'JAX_NUM_PROCESSES': 'two'}, 'must be an integer'),
    (dict(mode='sometimes'), {}, 'mode'),
  ],
)
def test_plan_rejects_incomplete_or_bad_settings(kwargs, env, message):
  with pytest.raises(ValueError, match=message):
    distributed.plan(env, **kwargs)


def test_initialize_passes_the_plan_and_timeouts(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda **kw: calls.append(kw))
  timeouts = distributed.Timeouts(initialization=7, heartbeat=8, shutdown=9)
  distributed.initialize(distributed.Plan('none', 'x'), timeouts=timeouts)
  assert not calls
  distributed.initialize(distributed.Plan('auto', 'x'), timeouts=timeouts)
  distributed.initialize(
    distributed.plan({}, coordinator_address='h:1', num_processes=2, process_id=1),
    timeouts=timeouts,
  )
  bounds = dict(
    initialization_timeout=7, heartbeat_timeout_seconds=8, shutdown_timeout_seconds=9
  )
  assert calls == [
    bounds,
    dict(bounds, coordinator_address='h:1', num_processes=2, process_id=1),
  ]


def test_initialize_sets_cpu_collectives(monkeypatch):
  updates = []
  monkeypatch.setattr(
    jax.config, 'update', lambda name, value: updates.append((name, value))
  )
  distributed.initialize(distributed.Plan('none', 'x'), cpu_collectives='gloo')
  assert ('jax_cpu_collectives_implementation', 'gloo') in updates


def test_log_prefix_names_the_process():
  handler = logging.get_absl_handler().python_handler
  previous = handler.formatter
  try:
    distributed.install_log_prefix(1, 4)
    distributed.install_log_prefix(1, 4)  # Idempotent: one prefix, not two.
    record = std_logging.LogRecord(
      'absl', std_logging.INFO, __file__, 1, 'two\nlines', None, None
    )
    lines = handler.formatter.format(record).split('\n')
    assert all(line.startswith('[process 1/4] ') for line in lines)
    assert not lines[0].startswith('[process 1/4] [process')
    assert lines[1] == '[process 1/4] lines'
  finally:
    handler.setFormatter(previous)


# --------------------------------------------------------------------------------------
# Real multi-process training (subprocesses)
# --------------------------------------------------------------------------------------

# The shared tiny config (configs/tiny.py), with no image pool (its random draws are per
# device) and a constant learning rate (num_epochs 1, no decay), so that runs of different
# lengths agree step by step. The patch loss with histories is on, so that its
# per-device keys and histories are checked across processes and resumes too. The
# production conv forms: these runs compare whole trainings, and were measured to agree
# within their bounds with those forms.
TINY = [
  '--config=' + os.path.join(REPO, 'configs', 'tiny.py'),
  '--config.model.conv_impl=auto',
  '--config.pool_size=0',
  '--config.loss.lambda_swd=1',
  '--config.loss.swd_bank=2',
  '--config.num_epochs=1',
  '--config.num_epochs_decay=0',
  '--config.checkpoint_every_steps=3',
  '--config.sample_every_steps=100000',
  '--config.num_sample_images=1',
  '--config.keep_checkpoints=20',
]
# Bounds of the 2-process runs: a dead peer is noticed within seconds; the shutdown
# bound is longer since process 0 alone writes summaries and may reach the final
# barrier well after process 1 on a loaded machine.
BOUNDS = [
  '--heartbeat_timeout_s=10',
  '--shutdown_timeout_s=60',
  '--initialization_timeout_s=120',
]
KILL_AT_STEP = 3  # The first checkpoint of the long run; one process is killed after it.
EXIT_BOUND_S = 90  # The survivor must exit with an error within this.


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def subprocess_env(devices: int, *, persistent_cache: bool) -> dict[str, str]:
  """The environment of a training subprocess with `devices` CPU devices.

  The 2-process runs compile without the persistent cache: gloo gives the processes 30 s
  to meet at their first collective, and only process 0 writes the cache, so a run
  where one process loads executables while the other compiles can miss that window.
  """
  env = dict(
    os.environ,
    JAX_PLATFORMS='cpu',
    TF_CPP_MIN_LOG_LEVEL='2',
    # LLVM level 0, as conftest.py sets for the in-process tests: these tiny programs
    # compile for far longer than they run.
    XLA_FLAGS=(
      f'--xla_force_host_platform_device_count={devices} '
      '--xla_backend_optimization_level=0'
    ),
    PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''),
  )
  if not persistent_cache:
    env.pop('JAX_COMPILATION_CACHE_DIR', None)
  return env


def saved_steps(workdir: str) -> list[int]:
  """Committed checkpoint steps (Orbax renames a step's folder once it is complete)."""
  path = checkpoints.checkpoint_dir(workdir)
  if not os.path.isdir(path):
    return []
  return sorted(int(n) for n in os.listdir(path) if n.isdigit())


def tail(path: str, n: int = 40) -> str:
  with open(path, errors='replace') as f:
    lines = [line for line in f.read().splitlines() if line.strip()]
  return '\n'.join(lines[-n:])


def two_processes_and_one(tmp_path, flags: list[str], timeout: int) -> tuple[str, str]:
  """Trains `flags` as 2 processes × 2 devices (gloo) and as 1 process emulating them on
  4 devices, on the same global batches; returns the two workdirs."""
  two, one = str(tmp_path / 'two'), str(tmp_path / 'one')
  port = free_port()
  logs = [str(tmp_path / f'p{i}.log') for i in range(2)]
  procs = []
  for i in range(2):
    cmd = [
      sys.executable,
      '-m',
      'cyclegan_jax.main',
      f'--workdir={two}',
      *flags,
      f'--coordinator_address=127.0.0.1:{port}',
      '--num_processes=2',
      f'--process_id={i}',
      '--cpu_collectives=gloo',
      *BOUNDS,
    ]
    with open(logs[i], 'w') as f:
      procs.append(
        subprocess.Popen(
          cmd,
          env=subprocess_env(2, persistent_cache=False),
          cwd=REPO,
          stdout=f,
          stderr=subprocess.STDOUT,
        )
      )
  for i, p in enumerate(procs):
    assert p.wait(timeout=timeout) == 0, tail(logs[i])
  cmd = [
    sys.executable,
    os.path.join(REPO, 'tests', 'emulated_processes_main.py'),
    '--emulate_processes=2',
    f'--workdir={one}',
    *flags,
  ]
  log = str(tmp_path / 'one.log')
  with open(log, 'w') as f:
    rc = subprocess.run(
      cmd,
      env=subprocess_env(4, persistent_cache=True),
      cwd=REPO,
      stdout=f,
      stderr=subprocess.STDOUT,
      timeout=timeout,
      check=False,
    ).returncode
  assert rc == 0, tail(log)
  return two, one


def generator_outputs(workdir: str, step: int, size: int) -> np.ndarray:
  """Generator G's output at checkpoint `step` on a fixed [2, size, size, 3] batch, with
  running statistics (--eval mode)."""
  from cyclegan_jax.deploy import inference  # pylint: disable=g-import-not-at-top

  restored = inference.restore(workdir, step)
  x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
  run = inference.generator_fn(restored.generator, inference.TestMode(model_eval=True))
  return np.asarray(run(restored.params['G'], x, restored.stats_for('G')))


def run_emulated_one_process(workdir: str, num_steps: int, log: str) -> str:
  """1 process × 4 devices fed the 2-process run's global batches; returns its log."""
  cmd = [
    sys.executable,
    os.path.join(REPO, 'tests', 'emulated_processes_main.py'),
    '--emulate_processes=2',
    f'--workdir={workdir}',
    *TINY,
    f'--config.num_train_steps={num_steps}',
  ]
  with open(log, 'w') as f:
    rc = subprocess.run(
      cmd,
      env=subprocess_env(4, persistent_cache=True),
      stdout=f,
      stderr=subprocess.STDOUT,
      timeout=420,
      check=False,
    ).returncode
  assert rc == 0, tail(log)
  with open(log, errors='replace') as f:
    return f.read()


@dataclasses.dataclass
class KilledRun:
  workdir: str
  logs: list[str]
  steps_at_kill: list[int]
  survivor_rc: int
  survivor_exit_s: float


@pytest.fixture(scope='module')
def killed_run(tmp_path_factory) -> KilledRun:
  """2 processes × 2 devices train a long run; process 1 is SIGKILLed after step 3's
  checkpoint. Records how process 0 (the coordinator's host) ends."""
  root = tmp_path_factory.mktemp('two_processes')
  workdir = str(root / 'workdir')
  logs = [str(root / f'process_{i}.log') for i in range(2)]
  port = free_port()
  env = subprocess_env(2, persistent_cache=False)
  procs = []
  try:
    for i in range(2):
      cmd = [
        sys.executable,
        '-m',
        'cyclegan_jax.main',
        f'--workdir={workdir}',
        *TINY,
        '--config.num_train_steps=100000',
        f'--coordinator_address=127.0.0.1:{port}',
        '--num_processes=2',
        f'--process_id={i}',
        '--cpu_collectives=gloo',
        *BOUNDS,
      ]
      with open(logs[i], 'w') as f:
        procs.append(
          subprocess.Popen(cmd, env=env, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        )
    deadline = time.monotonic() + 480
    while KILL_AT_STEP not in saved_steps(workdir):
      for i, p in enumerate(procs):
        assert p.poll() is None, f'process {i} exited early:\n{tail(logs[i])}'
      assert time.monotonic() < deadline, 'no checkpoint in time:\n' + tail(logs[0])
      time.sleep(0.2)
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    steps = saved_steps(workdir)
    try:
      rc = procs[0].wait(timeout=EXIT_BOUND_S + 60)
    except subprocess.TimeoutExpired:
      rc = None
    exit_s = time.monotonic() - killed_at
    assert rc is not None, f'process 0 still runs {exit_s:.0f} s after its peer died'
    return KilledRun(workdir, logs, steps, rc, exit_s)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()


@pytest.mark.slow
def test_a_dead_process_makes_the_other_exit_with_an_error(killed_run):
  assert killed_run.survivor_rc != 0, tail(killed_run.logs[0])
  assert killed_run.survivor_exit_s < EXIT_BOUND_S, tail(killed_run.logs[0])
  with open(killed_run.logs[0], errors='replace') as f:
    log = f.read()
  assert '4 CPU device(s) in 2 process(es), 2 in process 0' in log
  # Every line that Python's absl logging writes names the process (XLA's C++ lines,
  # '....cc:N]', go to the same per-process log).
  assert re.search(r'^\[process 0/2\] I\d{4} .*batch 4 global', log, re.M)
  assert not re.search(r'^[IWEF]\d{4} [\d:.]+ +\d+ \S+\.py:\d+\]', log, re.M)


@pytest.fixture(scope='module')
def one_process_reference(killed_run, tmp_path_factory) -> str:
  """1 process × 4 devices, 4 steps from scratch on the 2-process run's global batches."""
  root = tmp_path_factory.mktemp('one_process')
  run_emulated_one_process(str(root / 'workdir'), 4, str(root / 'log'))
  return str(root / 'workdir')


def network_outputs(params, model_config) -> dict[str, np.ndarray]:
  """What each of the four networks makes of one fixed batch."""
  # The plain layers (the fastest to compile) whatever the runs trained with.
  config = ml_collections.ConfigDict({**model_config, 'conv_impl': 'xla'})
  x = np.random.default_rng(0).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
  nets = {
    'G': models.generator_from_config(config),
    'D': models.discriminator_from_config(config),
  }
  return {
    name: np.asarray(nets[name[0]].apply({'params': params[name]}, x))
    for name in ('G_A', 'G_B', 'D_A', 'D_B')
  }


def assert_same_networks(
  have, want, step_before, step_after, model_config, *, fraction: float
):
  """`have` and `want` compute the same functions, to `fraction` of one training step.

  Compared through the networks' outputs on a fixed batch, relative to how far one
  training step (`step_before` -> `step_after`) moves them, not parameter by parameter:
  Adam's first steps move every parameter by about the learning rate times the sign of
  its gradient, also where that gradient is zero up to rounding (a conv bias followed
  by an InstanceNorm, which cancels it). Runs that sum the same numbers in another
  order (gloo's all-reduce vs. the in-process one) round differently, so such
  parameters differ by up to a step without changing what the networks compute, and
  the small differences that do matter grow step by step.
  """
  assert jax.tree.map(np.shape, have) == jax.tree.map(np.shape, want)
  out_have, out_want = (
    network_outputs(have, model_config),
    network_outputs(want, model_config),
  )
  before = network_outputs(step_before, model_config)
  after = network_outputs(step_after, model_config)
  for name in out_have:
    one_step = float(np.max(np.abs(after[name] - before[name])))
    diff = float(np.max(np.abs(out_have[name] - out_want[name])))
    assert one_step > 1e-3, name  # Training moves every network.
    assert diff < fraction * one_step, f'{name}: {diff} vs one step {one_step}'


@pytest.mark.slow
def test_two_processes_match_one_process(killed_run, one_process_reference):
  """3 steps from scratch: 2 processes × 2 devices vs 1 × 4 on the same global batches.

  Measured: the outputs agree to 0.6% of one step's change (rounding, amplified by
  Adam's first steps; see `assert_same_networks`), while a plain 1-process run, which
  reads other images, differs by 0.7 to 3.8 steps' change. The exact check of one
  step is the resume test below.
  """
  two, config, step = checkpoints.restore_params(killed_run.workdir, KILL_AT_STEP)
  one, _, _ = checkpoints.restore_params(one_process_reference, KILL_AT_STEP)
  assert step == KILL_AT_STEP and config['batch_size'] == 4 and config['pool_size'] == 0
  later, _, _ = checkpoints.restore_params(one_process_reference, KILL_AT_STEP + 1)
  assert_same_networks(two, one, one, later, config['model'], fraction=0.05)


@dataclasses.dataclass
class RestartedRun:
  resumed_from: int
  result: subprocess.CompletedProcess
  logs: list[str]


@pytest.fixture(scope='module')
def restarted_run(killed_run, tmp_path_factory) -> RestartedRun:
  """Both processes started again (launch/local_multiprocess.sh) for one more step."""
  last = max(saved_steps(killed_run.workdir))
  log_dir = str(tmp_path_factory.mktemp('restart') / 'logs')
  cmd = [
    'bash',
    os.path.join(REPO, 'launch', 'local_multiprocess.sh'),
    '--config',
    TINY[0].split('=', 1)[1],
    '--workdir',
    killed_run.workdir,
    '-n',
    '2',
    '-d',
    '2',
    '--log-dir',
    log_dir,
    '--python',
    sys.executable,
    '--',
    *TINY[1:],
    f'--config.num_train_steps={last + 1}',
    *BOUNDS,
  ]
  result = subprocess.run(
    cmd,
    env=subprocess_env(2, persistent_cache=False),
    capture_output=True,
    text=True,
    timeout=480,
    check=False,
  )
  return RestartedRun(
    last, result, [os.path.join(log_dir, f'process_{i}.log') for i in range(2)]
  )


@pytest.mark.slow
def test_restarting_both_processes_resumes_from_the_last_checkpoint(
  killed_run, restarted_run
):
  last = restarted_run.resumed_from
  assert last >= max(killed_run.steps_at_kill) >= KILL_AT_STEP
  assert restarted_run.result.returncode == 0, restarted_run.result.stderr + '\n'.join(
    tail(log) for log in restarted_run.logs
  )
  for i, log in enumerate(restarted_run.logs):
    with open(log, errors='replace') as f:
      text = f.read()
    assert re.search(
      rf'^\[process {i}/2\] .*Resuming from checkpoint {last} ', text, re.M
    )
  assert max(saved_steps(killed_run.workdir)) == last + 1


@pytest.mark.slow
def test_two_process_checkpoint_restores_and_resumes_in_one_process(
  killed_run, restarted_run, tmp_path
):
  last = restarted_run.resumed_from
  # Evaluation's path: parameters and config onto one device of this process.
  params, config, step = checkpoints.restore_params(killed_run.workdir, last)
  assert step == last
  assert set(params) == {'G_A', 'G_B', 'D_A', 'D_B'}
  assert config['model']['ngf'] == 4
  for leaf in jax.tree.leaves(params):
    assert len(leaf.sharding.device_set) == 1 and np.all(np.isfinite(leaf))
  # Training's path: one process × 4 devices resumes the 2-process checkpoint (its
  # optimiser states, per-device keys and step) and takes the next step on the same
  # global batch as the restarted 2 processes did: the same step, up to rounding.
  assert restarted_run.result.returncode == 0
  workdir = str(tmp_path / 'resumed')
  source = checkpoints.checkpoint_dir(killed_run.workdir)
  shutil.copytree(
    os.path.join(source, str(last)),
    os.path.join(checkpoints.checkpoint_dir(workdir), str(last)),
  )
  log = run_emulated_one_process(workdir, last + 1, str(tmp_path / 'log'))
  assert f'Resuming from checkpoint {last}' in log
  assert 'another device count' not in log
  one, config, step = checkpoints.restore_params(workdir)
  two, _, _ = checkpoints.restore_params(killed_run.workdir, last + 1)
  assert step == last + 1
  # Measured: 1e-5 of the step's change.
  assert_same_networks(one, two, params, two, config['model'], fraction=1e-3)
