"""model.remat's memory and time: the train step with and without it.

  python benchmarks/remat.py                      # 512², the paper's networks
  python benchmarks/remat.py --crop_size=256 --time_crop=128 --steps=5

For each setting (benchmarks/train_step.py's networks: resnet_9blocks at ngf = ndf = 64,
identity loss on, pool 50, batch 1, one device) it reports, at --crop_size:

* residual_mib: the activations the step keeps from the forward to the backward pass:
  the leaves of `jax.vjp`'s residuals of the generators' loss plus the critics' loss,
  from shapes alone (no compute). This is what remat shrinks, on any backend. (A value
  that two operations save is counted twice, so both figures are slight overestimates.)
* lowered_gflops: XLA's FLOP count of the step as lowered. It counts a loop's body
  once, and remat runs the blocks as a loop, so with remat it is not the work done
  (not compared below).
* temp_mib / compile_s: the compiled step's temp buffers (`memory_analysis()`), with
  --compile: the memory the backend actually plans.
* step_s_median: the median of --steps steps at --time_crop (a 512² step takes minutes
  on a small CPU; 0 skips it).

Prints one JSON line per setting, then the changes.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train_step  # noqa: E402  # Defines the shared flags (crop_size, ngf, ...).

FLAGS = flags.FLAGS
FLAGS.set_default('crop_size', 512)  # The crop whose memory is reported.
FLAGS.set_default('steps', 5)  # Timed steps (after 2 warm-up steps).
FLAGS.set_default('conv_impl', 'xla')  # The plain layers: the fastest compile.
flags.DEFINE_integer('time_crop', 64, 'Crop at which step time is measured (0: skip).')
flags.DEFINE_bool('compile', False, "Also compile at --crop_size: XLA's temp bytes.")


def _config(crop: int, remat: bool):
  config = train_step.config_from_flags(crop)
  config.model.remat = remat
  return config


def residual_mib(remat: bool) -> float:
  """MiB of the forward-to-backward residuals of both losses, from shapes alone."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.methods import cycle_gan  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.train import step as step_lib  # pylint: disable=g-import-not-at-top

  config = _config(FLAGS.crop_size, remat)
  networks = step_lib.create_networks(config, epoch_length=1000)
  shape = (config.crop_size, config.crop_size, 3)
  params = jax.eval_shape(
    lambda: cycle_gan.init_params(networks, jax.random.key(0), shape)
  )
  g = {k: params[k] for k in cycle_gan.GENERATORS}
  d = {k: params[k] for k in cycle_gan.DISCRIMINATORS}
  images = jax.ShapeDtypeStruct((config.batch_size, *shape), jnp.float32)

  def residuals(g, d, a, b):
    g_loss = lambda p: cycle_gan.generator_losses(p, d, a, b, networks=networks)[0]
    d_loss = lambda p: cycle_gan.discriminator_losses(p, a, b, b, a, networks=networks)[0]
    return jax.vjp(g_loss, g)[1], jax.vjp(d_loss, d)[1]

  leaves = jax.tree.leaves(jax.eval_shape(residuals, g, d, images, images))
  return sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in leaves) / 2**20


def lowered_and_compiled(remat: bool) -> dict:
  state, step, batch = train_step.build(_config(FLAGS.crop_size, remat), 1)
  lowered = step.lower(state, batch)
  cost = lowered.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  row = {'lowered_gflops': round(float(cost.get('flops', 0.0)) / 1e9, 1)}
  if FLAGS.compile:
    t0 = time.perf_counter()
    mem = lowered.compile().memory_analysis()
    row['compile_s'] = round(time.perf_counter() - t0, 1)
    row['temp_mib'] = round(mem.temp_size_in_bytes / 2**20, 1)
  return row


def step_time(remat: bool) -> dict:
  import jax  # pylint: disable=g-import-not-at-top

  state, step, batch = train_step.build(_config(FLAGS.time_crop, remat), 1)
  for _ in range(2):
    state, metrics = step(state, batch)
  jax.block_until_ready(state)
  times = []
  for _ in range(FLAGS.steps):
    t = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t)
  return {
    'time_crop': FLAGS.time_crop,
    'step_s_median': round(statistics.median(times), 4),
  }


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top

  rows = []
  for remat in (False, True):
    row = {
      'device': jax.devices()[0].device_kind,
      'remat': remat,
      'crop_size': FLAGS.crop_size,
      'batch_size': FLAGS.batch_size,
      'netG': FLAGS.netG,
      'ngf': FLAGS.ngf,
      'dtype': FLAGS.dtype,
      'conv_impl': FLAGS.conv_impl,
      'residual_mib': round(residual_mib(remat), 1),
      **lowered_and_compiled(remat),
    }
    if FLAGS.time_crop:
      row.update(step_time(remat))
    print(json.dumps(row), flush=True)
    rows.append(row)
  plain, remat = rows
  change = lambda key: (
    f'{plain[key]} -> {remat[key]} ({remat[key] / plain[key] - 1:+.0%})'
  )
  print(f'\nat {FLAGS.crop_size}²: residual MiB {change("residual_mib")}')
  if FLAGS.compile:
    print(f'compiled temp MiB {change("temp_mib")}')
  if FLAGS.time_crop:
    print(f'step s at {FLAGS.time_crop}²: {change("step_s_median")}')


if __name__ == '__main__':
  app.run(main)
