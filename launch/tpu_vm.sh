#!/usr/bin/env bash
# Cloud TPU VM slices (single host or pod): create, copy the code, install, train on every
# worker, follow the logs, stop, delete. Every worker runs the same command; JAX finds the
# other workers itself (--distributed=on), each worker feeds its own part of the data.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: launch/tpu_vm.sh [--dry-run] COMMAND [-- MAIN_ARGS...]

Commands:
  create   create the slice            (needs ACCELERATOR_TYPE; RUNTIME_VERSION, SPOT)
  copy     copy this checkout to ~/$REMOTE_DIR on every worker
  setup    install jax[tpu]==$JAX_VERSION and requirements.txt on every worker
  train    start training on every worker in the background (needs CONFIG, WORKDIR);
           each worker logs to ~/$REMOTE_DIR/train.log; MAIN_ARGS go to cyclegan_jax.main
  logs     follow the training log of worker $WORKER (default 0; WORKER=all: every worker)
  stop     SIGTERM the training on every worker: it saves a checkpoint and exits
  delete   delete the slice
  up       create, copy and setup

Environment (no defaults for the first three; nothing is hard-coded):
  PROJECT          GCP project                 ZONE     zone, e.g. us-central2-b
  TPU_NAME         name of the slice
  ACCELERATOR_TYPE e.g. v4-8 (one host) or v4-32 (a pod slice of 4 hosts)
  RUNTIME_VERSION  TPU VM image (default tpu-ubuntu2204-base)
  SPOT=1           create a spot slice (training resumes from the last checkpoint)
  CONFIG           config file, relative to the repo, e.g. configs/default.py
  WORKDIR          checkpoints and summaries; on a pod it must be storage that every
                   worker sees (gs://BUCKET/PATH), since every worker writes its shards
  REMOTE_DIR       code folder on the workers (default cyclegan-jax)
  JAX_VERSION      default: the jax pin of requirements.txt
  PYTHON           interpreter on the workers (default python3)
  DRY_RUN=1        print the commands instead of running them (same as --dry-run)

Example (a v4-32 pod slice, 4 hosts x 4 chips; global batch 32 = 8 per host = 2 per chip):
  export PROJECT=my-project ZONE=us-central2-b TPU_NAME=cyclegan ACCELERATOR_TYPE=v4-32
  launch/tpu_vm.sh up
  CONFIG=configs/default.py WORKDIR=gs://my-bucket/h2z launch/tpu_vm.sh train -- \
      --config.dataset=cycle_gan/horse2zebra --config.batch_size=32
  launch/tpu_vm.sh logs
  launch/tpu_vm.sh delete
EOF
}


require() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || die "$name is not set (see launch/tpu_vm.sh -h), e.g. export $name=..."
  done
}

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPT_NAME=tpu_vm.sh
# shellcheck source=launch/common.sh
source "$REPO/launch/common.sh"
DRY_RUN="${DRY_RUN:-0}"
RUNTIME_VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
REMOTE_DIR="${REMOTE_DIR:-cyclegan-jax}"
PYTHON="${PYTHON:-python3}"
WORKER="${WORKER:-0}"
SPOT="${SPOT:-0}"

COMMAND=""
MAIN_ARGS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; MAIN_ARGS=("$@"); break ;;
    -*) usage >&2; die "unknown option '$1' (main.py flags go after --)" ;;
    *) [[ -z "$COMMAND" ]] || die "one command at a time, got '$COMMAND' and '$1'"
       COMMAND="$1"; shift ;;
  esac
done
[[ -n "$COMMAND" ]] || { usage >&2; die "no COMMAND given"; }


# Runs a command, or prints it under DRY_RUN=1.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then show "$@"; else "$@"; fi
}

# Quotes arguments into one string for a remote shell.
quote() {
  local out
  printf -v out '%q ' "$@"
  printf '%s' "${out% }"
}

gcloud_tpu() {
  local verb="$1"
  shift
  run gcloud compute tpus tpu-vm "$verb" "$TPU_NAME" "--project=$PROJECT" "--zone=$ZONE" "$@"
}

on_workers() {  # on_workers WORKERS COMMAND_STRING
  gcloud_tpu ssh "--worker=$1" "--command=$2"
}

cmd_create() {
  require ACCELERATOR_TYPE RUNTIME_VERSION
  local spot=()
  [[ "$SPOT" == 1 ]] && spot=(--spot)
  gcloud_tpu create "--accelerator-type=$ACCELERATOR_TYPE" "--version=$RUNTIME_VERSION" \
    ${spot[@]+"${spot[@]}"}
}

cmd_copy() {
  local archive
  archive="${TMPDIR:-/tmp}/$REMOTE_DIR-$$.tgz"
  run tar --exclude=./.venv --exclude=./.git --exclude='*/__pycache__' -czf "$archive" \
    -C "$REPO" .
  gcloud_tpu scp "$archive" "$TPU_NAME:$REMOTE_DIR.tgz" --worker=all
  on_workers all "rm -rf ~/$(quote "$REMOTE_DIR") && mkdir -p ~/$(quote "$REMOTE_DIR") && \
tar -xzf ~/$(quote "$REMOTE_DIR.tgz") -C ~/$(quote "$REMOTE_DIR")"
  run rm -f "$archive"
}

cmd_setup() {
  local version="${JAX_VERSION:-}"
  if [[ -z "$version" ]]; then
    version="$(sed -n 's/^jax==//p' "$REPO/requirements.txt")"
  fi
  [[ -n "$version" ]] || die "JAX_VERSION is not set and requirements.txt pins no jax version."
  on_workers all "cd ~/$(quote "$REMOTE_DIR") && $(quote "$PYTHON") -m pip install -q -U pip && \
$(quote "$PYTHON") -m pip install -q -r requirements.txt $(quote "jax[tpu]==$version")"
}

cmd_train() {
  require CONFIG WORKDIR
  local main
  main="$(quote "$PYTHON" -m cyclegan_jax.main --distributed=on "--config=$CONFIG" \
    "--workdir=$WORKDIR" ${MAIN_ARGS[@]+"${MAIN_ARGS[@]}"})"
  # nohup + a pid file: training outlives the ssh session, `stop` can find it.
  on_workers all "cd ~/$(quote "$REMOTE_DIR") && nohup $main > train.log 2>&1 < /dev/null & \
echo \$! > ~/$(quote "$REMOTE_DIR")/train.pid"
  [[ "$DRY_RUN" == 1 ]] || echo "tpu_vm.sh: started on every worker; follow with: launch/tpu_vm.sh logs" >&2
}

cmd_logs() {
  on_workers "$WORKER" "tail -n 200 -F ~/$(quote "$REMOTE_DIR")/train.log"
}

cmd_stop() {
  on_workers all "kill -TERM \$(cat ~/$(quote "$REMOTE_DIR")/train.pid)"
}

cmd_delete() {
  gcloud_tpu delete --quiet
}

require PROJECT ZONE TPU_NAME
if [[ "$DRY_RUN" != 1 ]] && ! command -v gcloud >/dev/null; then
  die "gcloud is not installed (https://cloud.google.com/sdk/docs/install)."
fi
case "$COMMAND" in
  create) cmd_create ;;
  copy) cmd_copy ;;
  setup) cmd_setup ;;
  train) cmd_train ;;
  logs) cmd_logs ;;
  stop) cmd_stop ;;
  delete) cmd_delete ;;
  up) cmd_create; cmd_copy; cmd_setup ;;
  *) usage >&2; die "unknown command '$COMMAND'" ;;
esac
