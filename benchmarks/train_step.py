"""Train-step benchmark: compile time, s/step, pairs/s, FLOP/s, memory.

  python benchmarks/train_step.py --crop_size=128 --batch_size=1 --steps=20
  python benchmarks/train_step.py --crop_size=256 --dtype=bfloat16 --batch_size=8
  python benchmarks/train_step.py --crop_size=32 --ngf=16 --ndf=16 --steps=200  # memory flat?
  python benchmarks/train_step.py --method=pix2pix --netG=unet_256 --crop_size=256

Times the jitted, shard_mapped CycleGAN step alone (random batches already on the
devices, so the input pipeline is not measured; benchmarks/input_pipeline.py does that),
with the paper's networks and settings unless overridden (resnet_9blocks, ngf = ndf = 64,
identity loss on, pool 50). Prints one JSON line per run, then a table.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cyclegan_jax.nets import spec  # noqa: E402  # Imports no JAX.

FLAGS = flags.FLAGS
flags.DEFINE_integer('crop_size', 128, 'Training crop size (pixels).')
flags.DEFINE_integer('batch_size', 1, 'Global batch (image pairs per step).')
flags.DEFINE_enum(
  'method',
  'cycle_gan',
  ('cycle_gan', 'pix2pix'),
  "cycle_gan: the paper's settings; pix2pix: configs/pix2pix.py's (U-Net, batch norm, "
  'dropout, no pool; --netG a U-Net).',
)
flags.DEFINE_string(
  'netG', None, 'The generator (default: resnet_9blocks, or unet_256 for pix2pix).'
)
flags.DEFINE_integer('ngf', 64, 'Generator width.')
flags.DEFINE_integer('ndf', 64, 'Critic width.')
flags.DEFINE_string('dtype', 'float32', 'Compute dtype: float32 | bfloat16.')
flags.DEFINE_string('upsample', 'transpose', 'transpose | resize_conv | blur.')
flags.DEFINE_string('downsample', 'stride', 'stride | blur (the generators only).')
flags.DEFINE_float('ema_decay', 0.0, "Generators' weight average (0: off).")
flags.DEFINE_integer('devices', 0, 'Devices to use (0: all).')
flags.DEFINE_integer('pool_size', 50, 'Image pool size.')
flags.DEFINE_float('lambda_identity', 0.5, 'Identity weight (0.5 as the reference).')
flags.DEFINE_integer('warmup', 3, 'Steps run before timing.')
flags.DEFINE_integer('steps', 20, 'Timed steps.')
flags.DEFINE_enum(
  'conv_impl', 'auto', spec.CONV_IMPLS, 'model.conv_impl: the conv forms (nets/spec.py).'
)
flags.DEFINE_bool(
  'serve',
  False,
  'After compiling and warming up, run one step per '
  "'step' line on stdin and print its seconds (benchmarks/paired.py).",
)

# Dense peak FLOP/s of known accelerators (bf16 tensor cores; TF32 for float32 on GPUs),
# keyed by `device_kind` prefix; the longest matching prefix wins ("TPU v5 lite" is a
# v5e, "TPU v5" a v5p).
PEAK_FLOPS = {
  ('NVIDIA H100', 'bfloat16'): 989e12,
  ('NVIDIA H100', 'float32'): 495e12,
  ('NVIDIA H200', 'bfloat16'): 989e12,
  ('NVIDIA H200', 'float32'): 495e12,
  ('NVIDIA A100', 'bfloat16'): 312e12,
  ('NVIDIA A100', 'float32'): 156e12,
  ('TPU v4', 'bfloat16'): 275e12,
  ('TPU v5 lite', 'bfloat16'): 197e12,
  ('TPU v5', 'bfloat16'): 459e12,
  ('TPU v6 lite', 'bfloat16'): 918e12,
}


def peak_flops(device, dtype: str) -> float | None:
  kind = getattr(device, 'device_kind', '')
  matches = [
    (len(name), flops)
    for (name, dt), flops in PEAK_FLOPS.items()
    if kind.startswith(name) and dt == dtype
  ]
  return max(matches)[1] if matches else None


def peak_device_bytes(devices) -> int | None:
  peaks = []
  for d in devices:
    try:
      stats = d.memory_stats()
    except Exception:  # pylint: disable=broad-except  # CPU has none.
      stats = None
    if stats and 'peak_bytes_in_use' in stats:
      peaks.append(stats['peak_bytes_in_use'])
  return max(peaks) if peaks else None


def current_rss_mb() -> float:
  """This process's resident memory now (ru_maxrss only ever grows)."""
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def build(config, num_devices: int, devices=None):
  """The state, the step and a device batch for `config`, on `devices` (default: all)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top

  networks = step_lib.create_networks(config, epoch_length=1000)
  devices = devices or jax.devices()
  mesh = jax.make_mesh((num_devices,), ('data',), devices=devices[:num_devices])
  image_shape = (config.crop_size, config.crop_size, 3)
  state = step_lib.create_train_state(
    networks, seed=0, mesh=mesh, image_shape=image_shape, pool_size=config.pool_size
  )
  rng = np.random.default_rng(0)
  host = {
    k: rng.uniform(-1, 1, (config.batch_size, *image_shape)).astype(np.float32)
    for k in 'AB'
  }
  batch = next(step_lib.device_batches([host], mesh, prefetch=0))
  step = step_lib.make_parallel_train_step(networks, mesh, state)
  return state, step, batch


def model_flops(config, num_devices: int) -> float | None:
  """FLOPs of one step (all devices together) of the paper's networks, by XLA's count.

  The plain Flax layers in float32, lowered for one CPU device on the per-device batch
  and counted before compilation, so the figure is the same on every backend and for
  every layer form and dtype. (XLA:GPU's count of a lowered program came back empty, and
  a compiled program's count leaves out what a backend hands to a library, such as cuDNN
  convolutions, and counts the rewrites' extra or saved work: Winograd does fewer
  multiplies.) Achieved FLOP/s is this model count over the measured time, as in "model
  FLOPs utilisation". None if XLA gives no count.
  """
  import jax  # pylint: disable=g-import-not-at-top

  paper = config.copy_and_resolve_references()
  paper.batch_size = config.batch_size // num_devices
  paper.model.dtype = 'float32'
  paper.model.conv_impl = 'xla'
  state, step, batch = build(paper, 1, devices=jax.devices('cpu'))
  cost = step.lower(state, batch).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', 0.0)) * num_devices if cost else 0.0
  return flops if flops > 0 else None


def run_once(config, num_devices: int) -> dict:
  import jax  # pylint: disable=g-import-not-at-top

  # A --serve worker reports only step times: no need to lower the FLOP-count program.
  flops = None if FLAGS.serve else model_flops(config, num_devices)
  state, step, batch = build(config, num_devices)
  t0 = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t0

  for _ in range(FLAGS.warmup):
    state, metrics = compiled(state, batch)
  jax.block_until_ready(state)
  if FLAGS.serve:
    from paired import serve_steps  # pylint: disable=g-import-not-at-top

    def one_step():
      nonlocal state
      state, step_metrics = compiled(state, batch)
      jax.block_until_ready((state, step_metrics))

    serve_steps(one_step)
    sys.exit(0)
  rss_after_warmup = current_rss_mb()
  times = []
  for _ in range(FLAGS.steps):
    t = time.perf_counter()
    state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t)
  median = statistics.median(times)
  device = jax.devices()[0]
  peak = peak_flops(device, config.model.dtype)
  achieved = flops / median if flops else None
  return {
    'device': f'{num_devices}x {device.device_kind}',
    'method': config.method,
    'platform': device.platform,
    'crop_size': config.crop_size,
    'batch_size': config.batch_size,
    'netG': config.model.netG,
    'ngf': config.model.ngf,
    'ndf': config.model.ndf,
    'dtype': config.model.dtype,
    'upsample': config.model.upsample,
    'downsample': config.model.downsample,
    'ema_decay': config.ema.decay,
    'pool_size': config.pool_size,
    'conv_impl': spec.resolve_conv_impl(FLAGS.conv_impl, jax.default_backend()),
    'compile_s': round(compile_s, 2),
    'step_s_median': round(median, 4),
    'step_s_min': round(min(times), 4),
    'step_s_max': round(max(times), 4),
    'pairs_per_s': round(config.batch_size / median, 2),
    'model_gflops_per_step': round(flops / 1e9, 1) if flops else None,
    'achieved_tflops': round(achieved / 1e12, 3) if achieved else None,
    'fraction_of_peak': (
      round(achieved / (peak * num_devices), 3) if peak and achieved else None
    ),
    'peak_host_rss_mb': round(
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    ),
    # Host memory over the timed steps: flat (~0) means nothing accumulates per step.
    'host_rss_growth_mb': round(current_rss_mb() - rss_after_warmup, 1),
    'peak_device_mb': (
      round(peak_device_bytes(jax.local_devices()) / 2**20, 1)
      if peak_device_bytes(jax.local_devices())
      else None
    ),
  }


def print_table(rows: list[dict]) -> None:
  cols = [
    'device',
    'crop_size',
    'batch_size',
    'dtype',
    'compile_s',
    'step_s_median',
    'pairs_per_s',
    'achieved_tflops',
    'fraction_of_peak',
    'peak_host_rss_mb',
    'host_rss_growth_mb',
    'peak_device_mb',
  ]
  print('| ' + ' | '.join(cols) + ' |')
  print('|' + '---|' * len(cols))
  for r in rows:
    print('| ' + ' | '.join(str(r[c]) for c in cols) + ' |')


def config_from_flags(crop: int):
  """The paper's config with this benchmark's flags (networks, batch, pool) at `crop`."""
  from configs import default  # pylint: disable=g-import-not-at-top
  from configs import pix2pix  # pylint: disable=g-import-not-at-top

  pix2pix_run = FLAGS.method == 'pix2pix'
  config = pix2pix.get_config() if pix2pix_run else default.get_config()
  config.crop_size = config.load_size = crop
  config.batch_size = FLAGS.batch_size
  if not pix2pix_run:  # pix2pix has neither a pool nor an identity loss.
    config.pool_size = FLAGS.pool_size
    config.loss.lambda_identity = FLAGS.lambda_identity
  config.num_train_steps = 10_000
  config.model.netG = FLAGS.netG or config.model.netG
  config.model.ngf = FLAGS.ngf
  config.model.ndf = FLAGS.ndf
  config.model.dtype = FLAGS.dtype
  config.model.upsample = FLAGS.upsample
  config.model.downsample = FLAGS.downsample
  config.model.conv_impl = FLAGS.conv_impl
  config.ema.decay = FLAGS.ema_decay
  return config


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top

  config = config_from_flags(FLAGS.crop_size)
  num_devices = FLAGS.devices or jax.device_count()
  if config.batch_size % num_devices:
    raise app.UsageError(
      f'--batch_size={config.batch_size} must divide by the {num_devices} devices.'
    )
  row = run_once(config, num_devices)
  print(json.dumps(row))
  print_table([row])


if __name__ == '__main__':
  app.run(main)
