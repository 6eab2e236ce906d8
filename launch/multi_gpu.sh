#!/usr/bin/env bash
# One host, all its GPUs (or those in GPUS): one process drives every local GPU; the
# global batch is split evenly over them.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/multi_gpu.sh [options] [-- MAIN_ARGS...]

Trains with one process on all the local GPUs (or GPUS), logging to LOG_DIR/train.log
as well as the terminal. Run the same command again to resume from the last checkpoint.

Options (each also read from the environment variable named):
  -c, --config FILE   CONFIG    config file (required), e.g. configs/default.py
  -w, --workdir DIR   WORKDIR   checkpoints and summaries (required)
  -g, --gpus LIST     GPUS      GPUs to use, e.g. 0,1,2,3 (default: all)
  -l, --log-dir DIR   LOG_DIR   default WORKDIR/logs
      --python BIN    PYTHON    interpreter (default .venv/bin/python, else python3)
      --dry-run       DRY_RUN=1 print the commands instead of running them
  -h, --help
MAIN_ARGS (after --) go to cyclegan_jax.main, e.g. --config.batch_size=8 (the global
batch: it must divide by the number of GPUs).

JAX needs its CUDA build, of the version requirements.txt pins:
  pip install -r requirements.txt "jax[cuda12]==$(sed -n 's/^jax==//p' requirements.txt)"
EOF
}



REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT_NAME=multi_gpu.sh
# shellcheck source=launch/common.sh
source "$REPO/launch/common.sh"
CONFIG="${CONFIG:-}"
WORKDIR="${WORKDIR:-}"
GPUS="${GPUS:-}"
LOG_DIR="${LOG_DIR:-}"
PYTHON="${PYTHON:-}"
DRY_RUN="${DRY_RUN:-0}"
MAIN_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    -c|--config) CONFIG="${2:?--config needs a value}"; shift 2 ;;
    -w|--workdir) WORKDIR="${2:?--workdir needs a value}"; shift 2 ;;
    -g|--gpus) GPUS="${2:?--gpus needs a value}"; shift 2 ;;
    -l|--log-dir) LOG_DIR="${2:?--log-dir needs a value}"; shift 2 ;;
    --python) PYTHON="${2:?--python needs a value}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; MAIN_ARGS=("$@"); break ;;
    *) usage >&2; die "unknown option '$1' (main.py flags go after --)" ;;
  esac
done

[[ -n "$CONFIG" ]] || die "CONFIG is not set: pass --config FILE or set CONFIG=FILE."
[[ -n "$WORKDIR" ]] || die "WORKDIR is not set: pass --workdir DIR or set WORKDIR=DIR."
[[ -z "$GPUS" || "$GPUS" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "GPUS must look like 0,1,2,3, got '$GPUS'."
LOG_DIR="${LOG_DIR:-$WORKDIR/logs}"
PYTHON="$(default_python)"
JAX_VERSION="$(sed -n 's/^jax==//p' "$REPO/requirements.txt")"

ENV=(env "PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}")
[[ -n "$GPUS" ]] && ENV+=("CUDA_VISIBLE_DEVICES=$GPUS")
CHECK=("${ENV[@]}" "$PYTHON" -c 'import jax; print(len(jax.devices("gpu")))')
CMD=("${ENV[@]}" "$PYTHON" -m cyclegan_jax.main --distributed=off "--config=$CONFIG"
     "--workdir=$WORKDIR" ${MAIN_ARGS[@]+"${MAIN_ARGS[@]}"})

if [[ "$DRY_RUN" == 1 ]]; then
  show "${CHECK[@]}"
  echo "mkdir -p $LOG_DIR"
  echo "$(show "${CMD[@]}") 2>&1 | tee -a $LOG_DIR/train.log"
  exit 0
fi

command -v nvidia-smi >/dev/null || die "nvidia-smi not found: is this a GPU host with the NVIDIA driver?"
if ! NUM_GPUS="$("${CHECK[@]}" 2>/dev/null | tail -n 1)" || [[ -z "$NUM_GPUS" ]]; then
  die "JAX sees no GPU. Install its CUDA build: $PYTHON -m pip install \"jax[cuda12]==$JAX_VERSION\""
fi
mkdir -p "$LOG_DIR"
echo "multi_gpu.sh: $NUM_GPUS GPUs; log $LOG_DIR/train.log" >&2
"${CMD[@]}" 2>&1 | tee -a "$LOG_DIR/train.log"
