#!/usr/bin/env bash
# Runs one training as N CPU processes on this machine, the way the hosts of a pod run it:
# each process has its own CPU devices (XLA_FLAGS), they meet at a coordinator on
# 127.0.0.1 and average gradients with gloo collectives. Each writes its own log.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/local_multiprocess.sh [options] [-- MAIN_ARGS...]

Starts NUM_PROCESSES CPU processes of `python -m cyclegan_jax.main` on this machine,
joined by jax.distributed (coordinator 127.0.0.1:PORT) with gloo collectives, each with
DEVICES_PER_PROCESS CPU devices and its own log LOG_DIR/process_<i>.log. Waits for all of
them; exits non-zero if any fails. Ctrl-C / SIGTERM is passed on (they save and stop).

Options (each also read from the environment variable named):
  -c, --config FILE     CONFIG               config file (required), e.g. configs/demo.py
  -w, --workdir DIR     WORKDIR              checkpoints and summaries (required)
  -n, --num-processes N NUM_PROCESSES        processes (default 2)
  -d, --devices N       DEVICES_PER_PROCESS  CPU devices per process (default 2)
  -p, --port PORT       PORT                 coordinator port (default: a free one)
  -l, --log-dir DIR     LOG_DIR              per-process logs (default WORKDIR/logs)
      --python BIN      PYTHON               interpreter (default .venv/bin/python, else python3)
      --dry-run         DRY_RUN=1            print the commands instead of running them
  -h, --help                                 this text
MAIN_ARGS (after --) go to every process, e.g. --config.batch_size=8.
The global batch (config.batch_size) must divide by NUM_PROCESSES * DEVICES_PER_PROCESS.

Example:
  launch/local_multiprocess.sh -c configs/demo.py -w /tmp/demo2x2 -n 2 -d 2
EOF
}



REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT_NAME=local_multiprocess.sh
# shellcheck source=launch/common.sh
source "$REPO/launch/common.sh"
CONFIG="${CONFIG:-}"
WORKDIR="${WORKDIR:-}"
NUM_PROCESSES="${NUM_PROCESSES:-2}"
DEVICES_PER_PROCESS="${DEVICES_PER_PROCESS:-2}"
PORT="${PORT:-}"
LOG_DIR="${LOG_DIR:-}"
PYTHON="${PYTHON:-}"
DRY_RUN="${DRY_RUN:-0}"
MAIN_ARGS=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -c|--config) CONFIG="${2:?--config needs a value}"; shift 2 ;;
    -w|--workdir) WORKDIR="${2:?--workdir needs a value}"; shift 2 ;;
    -n|--num-processes) NUM_PROCESSES="${2:?--num-processes needs a value}"; shift 2 ;;
    -d|--devices) DEVICES_PER_PROCESS="${2:?--devices needs a value}"; shift 2 ;;
    -p|--port) PORT="${2:?--port needs a value}"; shift 2 ;;
    -l|--log-dir) LOG_DIR="${2:?--log-dir needs a value}"; shift 2 ;;
    --python) PYTHON="${2:?--python needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; MAIN_ARGS=("$@"); break ;;
    *) usage >&2; die "unknown option '$1' (main.py flags go after --)" ;;
  esac
done

[[ -n "$CONFIG" ]] || die "CONFIG is not set: pass --config FILE or set CONFIG=FILE."
[[ -n "$WORKDIR" ]] || die "WORKDIR is not set: pass --workdir DIR or set WORKDIR=DIR."
[[ "$NUM_PROCESSES" =~ ^[1-9][0-9]*$ ]] || die "NUM_PROCESSES must be a positive integer, got '$NUM_PROCESSES'."
[[ "$DEVICES_PER_PROCESS" =~ ^[1-9][0-9]*$ ]] || die "DEVICES_PER_PROCESS must be a positive integer, got '$DEVICES_PER_PROCESS'."
LOG_DIR="${LOG_DIR:-$WORKDIR/logs}"
PYTHON="$(default_python)"
if [[ -z "$PORT" ]]; then
  # Bind to port 0 and let the kernel pick a free one.
  PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
[[ "$PORT" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$PORT'."

# Keep the caller's XLA flags except a device count, which this script sets per process.
XLA_BASE=()
for flag in ${XLA_FLAGS:-}; do
  [[ "$flag" == --xla_force_host_platform_device_count=* ]] || XLA_BASE+=("$flag")
done
XLA="${XLA_BASE[*]:+${XLA_BASE[*]} }--xla_force_host_platform_device_count=$DEVICES_PER_PROCESS"

# The command of process $1, as an array in CMD.
command_for() {
  CMD=(env JAX_PLATFORMS=cpu "XLA_FLAGS=$XLA" "PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}"
       "$PYTHON" -m cyclegan_jax.main "--config=$CONFIG" "--workdir=$WORKDIR"
       "--coordinator_address=127.0.0.1:$PORT" "--num_processes=$NUM_PROCESSES"
       "--process_id=$1" --cpu_collectives=gloo ${MAIN_ARGS[@]+"${MAIN_ARGS[@]}"})
}

if [[ "$DRY_RUN" == 1 ]]; then
  show mkdir -p "$LOG_DIR"
  for ((i = 0; i < NUM_PROCESSES; i++)); do
    command_for "$i"
    echo "$(show "${CMD[@]}") > $(show "$LOG_DIR/process_$i.log") 2>&1 &"
  done
  echo "wait"
  exit 0
fi

mkdir -p "$LOG_DIR"
PIDS=()
# shellcheck disable=SC2317,SC2329  # Invoked by the trap.
forward() {
  echo "local_multiprocess.sh: passing SIGTERM to ${PIDS[*]}" >&2
  kill -TERM "${PIDS[@]}" 2>/dev/null || true
}
trap forward INT TERM
for ((i = 0; i < NUM_PROCESSES; i++)); do
  command_for "$i"
  "${CMD[@]}" >"$LOG_DIR/process_$i.log" 2>&1 &
  PIDS+=("$!")
done
echo "local_multiprocess.sh: $NUM_PROCESSES processes x $DEVICES_PER_PROCESS CPU devices," \
  "coordinator 127.0.0.1:$PORT, pids ${PIDS[*]}; logs: $LOG_DIR/process_*.log" >&2

FAILED=0
for ((i = 0; i < NUM_PROCESSES; i++)); do
  rc=0
  # A trapped signal interrupts `wait`; wait again until the process really ended.
  while true; do
    wait "${PIDS[$i]}" && rc=0 || rc=$?
    kill -0 "${PIDS[$i]}" 2>/dev/null || break
  done
  if [[ "$rc" -ne 0 ]]; then
    echo "local_multiprocess.sh: process $i (pid ${PIDS[$i]}) exited with status $rc;" \
      "see $LOG_DIR/process_$i.log" >&2
    FAILED=1
  fi
done
exit "$FAILED"
