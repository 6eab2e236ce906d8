"""Plain vs fast (`cyclegan_jax.nets.cpu_forms`) generator layers: median wall times.

Times, on the default JAX backend, the layers that XLA:CPU runs poorly and the whole
`ResnetGenerator`, each in its plain Flax form and with the exact rewrites:

  - `up_1`: ConvTranspose 3×3 s2, (S/2)×(S/2)×2ngf → S×S×ngf (and `up_0` one level lower);
  - `head`: the last 7×7 conv, (S+6)×(S+6)×ngf → S×S×3;
  - `block conv`: a residual block's 3×3 conv at S/4 × S/4 × 4ngf (Winograd in float32,
    row-major matmuls in bfloat16);
  - `generator`: resnet_{blocks}blocks at S×S: plain (conv_impl 'xla'), every rewrite
    ("fast", 'cpu') and, where the backend's 'auto' picks a subset ('gpu',
    `cpu_forms.IMPL_FORMS`), that ("auto").

Each layer row forces its rewrite on, whatever auto mode picks on this backend.

"fwd" is the forward pass alone; "fwd+bwd" the forward plus the gradients w.r.t. every
input and parameter. Variants are run round-robin in one process so that load from other
processes hits them alike; each line gives the median and the 10th–90th percentile range.

  python benchmarks/layers.py                     # 128×128, batch 1, ngf 64, 9 blocks
  python benchmarks/layers.py --size=256 --dtype=bfloat16 --reps=10
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
import functools
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cyclegan_jax.nets import cpu_forms  # pylint: disable=g-import-not-at-top
from cyclegan_jax.nets import models  # pylint: disable=g-import-not-at-top
from cyclegan_jax.nets import spec  # pylint: disable=g-import-not-at-top


def _plain_conv_transpose(x, kernel, bias):
  return (
    jax.lax.conv_transpose(x, kernel, (2, 2), ((1, 2), (1, 2)), transpose_kernel=True)
    + bias
  )


def _plain_conv(x, kernel, bias):
  return (
    jax.lax.conv_general_dilated(
      x, kernel, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
    )
    + bias
  )


def _fast_conv(x, kernel, bias):
  return cpu_forms.shifted_matmul_conv(x, kernel) + bias


def _fast_block_conv(x, kernel, bias):
  """The residual blocks' conv as `models.conv_layer` computes it with fast layers on."""
  return cpu_forms.conv_form(cpu_forms.ALL, x.dtype, 3, 1)(x, kernel) + bias


def _fwd_bwd(fn: Callable[..., jax.Array]) -> Callable[..., Any]:
  """fn(*args) → (output, grads of ⟨output, cotangent⟩ w.r.t. every arg)."""

  def run(cotangent, *args):
    y, vjp = jax.vjp(fn, *args)
    return y, vjp(cotangent.astype(y.dtype))

  return run


def _time(
  cases: dict[str, tuple[Callable[..., Any], Sequence[Any]]], reps: int
) -> dict[str, np.ndarray]:
  """Compiles and warms up every case, then times them round-robin."""
  jitted = {}
  for name, (fn, args) in cases.items():
    jitted[name] = jax.jit(fn)
    jax.block_until_ready(jitted[name](*args))  # compile
    jax.block_until_ready(jitted[name](*args))  # warm
  times = {name: [] for name in cases}
  for _ in range(reps):
    for name, (_, args) in cases.items():
      start = time.perf_counter()
      jax.block_until_ready(jitted[name](*args))
      times[name].append(time.perf_counter() - start)
  return {name: np.asarray(t) for name, t in times.items()}


def _report(title: str, times: dict[str, np.ndarray]) -> None:
  print(f'\n{title}')
  for name, t in times.items():
    p10, p50, p90 = np.percentile(t, [10, 50, 90])
    print(
      f'  {name:<22s} median {p50 * 1e3:8.2f} ms   (p10–p90 {p10 * 1e3:.2f}–'
      f'{p90 * 1e3:.2f} ms, n={t.size})'
    )


def _max_diff(a: Any, b: Any) -> float:
  return max(
    float(jnp.max(jnp.abs(jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32))))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )


def bench_layer(
  title: str,
  plain: Callable[..., jax.Array],
  fast: Callable[..., jax.Array],
  args: Sequence[jax.Array],
  reps: int,
) -> None:
  """Times one layer's plain and fast forms, forward and forward + backward."""
  cotangent = jax.random.normal(jax.random.key(1), jax.eval_shape(plain, *args).shape)
  cases = {
    'plain fwd': (plain, args),
    'fast fwd': (fast, args),
    'plain fwd+bwd': (_fwd_bwd(plain), (cotangent, *args)),
    'fast fwd+bwd': (_fwd_bwd(fast), (cotangent, *args)),
  }
  diff = _max_diff(
    jax.jit(_fwd_bwd(plain))(cotangent, *args), jax.jit(_fwd_bwd(fast))(cotangent, *args)
  )
  _report(
    f'{title}   [max |plain − fast| over output and grads: {diff:.2e}]',
    _time(cases, reps),
  )


def bench_generator(
  size: int, batch: int, ngf: int, blocks: int, dtype: str, reps: int
) -> None:
  """Times the whole generator, plain vs fast layers, forward and forward + backward."""
  x = jax.random.uniform(jax.random.key(0), (batch, size, size, 3), minval=-1, maxval=1)
  cases = {}
  outputs = {}
  modes = {'plain': 'xla', 'fast': 'cpu'}
  auto = spec.resolve_conv_impl('auto', jax.default_backend())
  if auto not in modes.values():
    modes['auto'] = auto  # This backend's measured subset of the rewrites.
  for mode, conv_impl in modes.items():
    model = models.ResnetGenerator(
      ngf=ngf, num_blocks=blocks, dtype=dtype, conv_impl=conv_impl
    )
    params = model.init(jax.random.key(0), x)['params']

    def loss(params, x, model=model):
      y = model.apply({'params': params}, x)
      return jnp.mean(jnp.abs(y - x))  # an L1 like the cycle loss

    cases[f'{mode} fwd'] = (
      lambda p, x, model=model: model.apply({'params': p}, x),
      (params, x),
    )
    cases[f'{mode} fwd+bwd'] = (jax.value_and_grad(loss, argnums=(0, 1)), (params, x))
    outputs[mode] = jax.jit(cases[f'{mode} fwd+bwd'][0])(params, x)
  diff = _max_diff(outputs['plain'], outputs['fast'])
  _report(
    f'generator resnet_{blocks}blocks ngf {ngf}, {batch}×{size}×{size}, {dtype}   '
    f'[max |plain − fast| over loss and grads: {diff:.2e}]',
    _time(cases, reps),
  )


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--size', type=int, default=128, help='generator input H = W')
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--ngf', type=int, default=64)
  parser.add_argument('--blocks', type=int, default=9)
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  parser.add_argument('--reps', type=int, default=30, help='timed runs per layer case')
  parser.add_argument('--generator_reps', type=int, default=10)
  parser.add_argument('--skip_layers', action='store_true')
  parser.add_argument('--skip_generator', action='store_true')
  args = parser.parse_args(argv)
  print(
    f'backend {jax.default_backend()}, devices {jax.devices()}, '
    f'conv_impl auto → {spec.resolve_conv_impl("auto", jax.default_backend())}; '
    'each layer below runs its rewrite forced on'
  )

  dtype = models.resolve_dtype(args.dtype)
  keys = jax.random.split(jax.random.key(0), 3)
  s, c, b = args.size, args.ngf, args.batch
  if not args.skip_layers:
    for name, (h, cin, cout) in {
      'up_0': (s // 4, 4 * c, 2 * c),
      'up_1': (s // 2, 2 * c, c),
    }.items():
      layer_args = (
        jax.random.normal(keys[0], (b, h, h, cin), dtype),
        (0.02 * jax.random.normal(keys[1], (3, 3, cout, cin))).astype(dtype),
        (0.02 * jax.random.normal(keys[2], (cout,))).astype(dtype),
      )
      conv2x2 = cpu_forms.conv_form(cpu_forms.ALL, dtype, 2, 1)
      bench_layer(
        f'{name}: ConvTranspose 3×3 s2, {b}×{h}×{h}×{cin} → '
        f'{2 * h}×{2 * h}×{cout}, {args.dtype}',
        _plain_conv_transpose,
        functools.partial(cpu_forms.subpixel_conv_transpose, conv=conv2x2),
        layer_args,
        args.reps,
      )
    h, cb = s // 4, 4 * c
    layer_args = (
      jax.random.normal(keys[0], (b, h + 2, h + 2, cb), dtype),
      (0.02 * jax.random.normal(keys[1], (3, 3, cb, cb))).astype(dtype),
      (0.02 * jax.random.normal(keys[2], (cb,))).astype(dtype),
    )
    tile = cpu_forms.winograd_tile_for(h, h)
    form = (
      f'Winograd F({tile}×{tile}, 3×3)' if jnp.dtype(dtype) == jnp.float32 else 'matmuls'
    )
    bench_layer(
      f'block conv: Conv 3×3, {b}×{h + 2}×{h + 2}×{cb} → {h}×{h}×{cb}, '
      f'{args.dtype} (fast: {form})',
      _plain_conv,
      _fast_block_conv,
      layer_args,
      args.reps,
    )
    layer_args = (
      jax.random.normal(keys[0], (b, s + 6, s + 6, c), dtype),
      (0.02 * jax.random.normal(keys[1], (7, 7, c, 3))).astype(dtype),
      (0.02 * jax.random.normal(keys[2], (3,))).astype(dtype),
    )
    bench_layer(
      f'head: Conv 7×7, {b}×{s + 6}×{s + 6}×{c} → {s}×{s}×3, {args.dtype}',
      _plain_conv,
      _fast_conv,
      layer_args,
      args.reps,
    )
  if not args.skip_generator:
    bench_generator(s, b, c, args.blocks, args.dtype, args.generator_reps)


if __name__ == '__main__':
  main()
