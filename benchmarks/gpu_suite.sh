#!/usr/bin/env bash
# The GPU figures of the README's performance table, in one prepared run:
#   - the JAX train step at 256×256 (float32 and bfloat16, batch 1 and 8);
#   - the PyTorch reference iteration on the same GPU (same configs; torch's cuDNN defaults);
#   - translation throughput (generator only, 256×256, batch 8);
#   - the plain Flax layers (conv_impl=xla), against the default forms (auto: on GPU, the
#     sub-pixel up-convs and, in float32, the head; cpu_forms.IMPL_FORMS['gpu']).
#
#   bash benchmarks/gpu_suite.sh            # writes $OUT (default /tmp/gpu_suite)/results.jsonl
#   ONLY='jax_bfloat16_b8|translate' bash benchmarks/gpu_suite.sh   # a subset, by run name
#
# On an H200 the whole suite takes about 7 minutes, mostly compilation (~30 s per JAX run
# with the default forms, 60–100 s with every rewrite); PER_RUN_S bounds each run.
#
# Needs jax with its CUDA plugin, flax, optax, ml_collections and (for the reference) torch;
# TensorFlow is not needed: the step module imports none of the input pipeline.
set -u
OUT=${OUT:-/tmp/gpu_suite}
PY=${PYTHON:-python3}
TORCH_PY=${TORCH_PYTHON:-$PY}
PER_RUN_S=${PER_RUN_S:-240}   # A run that takes longer is stopped; the rest still run.
ONLY=${ONLY:-}                # A regex: run only the benchmarks whose names match.
SIZE=${SIZE:-256}
STEPS=${STEPS:-30}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv \
  | tee "$OUT/gpu.txt" || true
"$PY" -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__,
"optax", optax.__version__, jax.devices())' 2>&1 | tee "$OUT/versions.txt"

# One benchmark: its whole log kept, its JSON line appended to results.jsonl.
run() {
  local name=$1; shift
  if [[ -n "$ONLY" && ! "$name" =~ $ONLY ]]; then return; fi
  echo "== $name: $*"
  timeout "$PER_RUN_S" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  grep -h '^{' "$OUT/$name.log" | sed "s/^{/{\"run\": \"$name\", /" >> "$OUT/results.jsonl"
  grep -h '^{\|^translate\|Error\|error:' "$OUT/$name.log" | tail -3
  [ $rc -eq 0 ] || echo "   ($name exited $rc)"
}

for dtype in float32 bfloat16; do
  for batch in 1 8; do
    run "jax_${dtype}_b${batch}" "$PY" benchmarks/train_step.py --crop_size="$SIZE" \
      --batch_size="$batch" --dtype="$dtype" --warmup=5 --steps="$STEPS"
    run "torch_${dtype}_b${batch}" "$TORCH_PY" benchmarks/torch_reference.py --device=cuda \
      --crop_size="$SIZE" --batch_size="$batch" --dtype="$dtype" --warmup=5 --steps="$STEPS"
  done
done
for dtype in float32 bfloat16; do
  run "translate_${dtype}" "$PY" benchmarks/translate.py --size="$SIZE" --batch_size=8 \
    --dtype="$dtype" --batches=20
done
for dtype in float32 bfloat16; do
  run "jax_${dtype}_b1_plain" "$PY" benchmarks/train_step.py --crop_size="$SIZE" \
    --batch_size=1 --dtype="$dtype" --conv_impl=xla --warmup=5 --steps="$STEPS"
done

echo "== summary (s/step median)"
"$PY" - "$OUT/results.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
  r = json.loads(line)
  if 'images_per_s_median' in r:
    print(f"{r['run']:24s} {r['images_per_s_median']:8.1f} images/s (generator only)")
    continue
  print(f"{r['run']:24s} {r['step_s_median']:8.4f} s  {r.get('pairs_per_s')} pairs/s  "
        f"compile {r.get('compile_s', '-')} s  TFLOP/s {r.get('achieved_tflops', '-')}  "
        f"peak dev MB {r.get('peak_device_mb', '-')}")
EOF
