"""Exact, CPU-friendly reformulations of the generator's two slow layers.

XLA on CPU runs ordinary convolutions and matmuls well, but two layers of the ResNet
generator compile poorly there (docs/cpu_conv_forms.md): the gradient of the stride-2 transposed
convolution, and the final 7×7 convolution to 3 channels (forward and backward). Each
function here computes exactly the same thing as the plain layer, up to float rounding,
from the parameters in the same layout, so weight import and checkpoints are unaffected:

- `subpixel_conv_transpose`: PyTorch's `ConvTranspose2d(k=3, s=2, p=1, output_padding=1)`
  as one ordinary 2×2 convolution to 4·Cout channels (one group per output phase)
  followed by a depth-to-space shuffle. Its autodiff backward is made of ordinary convs.
- `shifted_matmul_conv`: a VALID k×k convolution with few output channels as a 1×1
  projection to k²·Cout channels plus k² shifted adds, with a `jax.custom_vjp` (the
  autodiff backward of the shifted adds is very slow on CPU): dx as an ordinary k×k conv
  Cout → Cin, dkernel as one contraction against shifted copies of the cotangent.
- `winograd_conv3x3` (float32 3×3 stride 1, F(2×2, 3×3) or, on large images,
  F(4×4, 3×3)), `im2col_conv` (the other convs in float32)
  and `matmul_conv` / `stride2_conv` (bfloat16): the other convolutions in forms that
  XLA:CPU's matmuls run faster than its convolutions (`conv_form` picks).

Which rewrites a network uses is a `Forms` value; `resolve_forms` turns a model's
`fast_layers` setting (True / False / None = auto) into one, auto mode picking per backend
and dtype the rewrites measured to win there (`MEASURED_FORMS`: all of them on CPU; on GPU
only the sub-pixel up-convs and, in float32, the head; none on TPU, unmeasured).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

# Which tap of the 3-tap transposed kernel feeds output phase a (0: even rows, 1: odd rows)
# from input row m + d, d ∈ {0, 1}. From o = 2i − p + k with p = 1: an even output 2m sees
# only x[m] through tap 1; an odd output 2m+1 sees x[m] through tap 2 and x[m+1] through
# tap 0. None means the phase does not use that input row (a zero tap).
_PHASE_TAPS = ((1, None), (2, 0))


def subpixel_kernel(kernel: jax.Array) -> jax.Array:
  """Rearranges a (3, 3, out, in) transposed-conv kernel into a 2×2 sub-pixel kernel.

  Args:
    kernel: the kernel as `nn.ConvTranspose(transpose_kernel=True)` stores it, i.e. the
      PyTorch IOHW weight transposed to HWOI (no spatial flip).

  Returns:
    A (2, 2, in, 4·out) HWIO kernel whose output channels are ordered (row phase,
    column phase, out).
  """
  _, _, features, in_features = kernel.shape
  zeros = jnp.zeros((in_features, features), kernel.dtype)
  rows = []
  for dh in range(2):
    cols = []
    for dw in range(2):
      phases = []
      for a in range(2):
        for b in range(2):
          th, tw = _PHASE_TAPS[a][dh], _PHASE_TAPS[b][dw]
          phases.append(zeros if th is None or tw is None else kernel[th, tw].T)
      cols.append(jnp.concatenate(phases, axis=-1))
    rows.append(jnp.stack(cols))
  return jnp.stack(rows)


def subpixel_conv_transpose(
  x: jax.Array,
  kernel: jax.Array,
  bias: jax.Array | None = None,
  *,
  conv: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> jax.Array:
  """`ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)` via sub-pixel conv.

  Equals `nn.ConvTranspose(features, (3, 3), strides=(2, 2), padding=((1, 2), (1, 2)),
  transpose_kernel=True)` with the same kernel, to float rounding, but its gradients are
  ordinary convolutions (or whatever `conv` computes its 2×2 conv as) instead of a
  dilated one.

  Args:
    x: (N, H, W, in) input.
    kernel: (3, 3, out, in) kernel in `nn.ConvTranspose(transpose_kernel=True)` layout.
    bias: optional (out,) bias.
    conv: the form of the inner VALID 2×2 conv, (padded x, HWIO kernel) → y, e.g.
      `conv_form(forms, dtype, 2, 1)`; None: XLA's convolution.

  Returns:
    The (N, 2H, 2W, out) output, in the dtype of `x`.
  """
  n, h, w, _ = x.shape
  features = kernel.shape[2]
  # Each output phase needs the input row/column m and m + 1; the last m + 1 is the
  # zero border that output_padding adds.
  if conv is not None:
    y = conv(jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0))), subpixel_kernel(kernel))
  else:
    y = jax.lax.conv_general_dilated(
      x,
      subpixel_kernel(kernel),
      window_strides=(1, 1),
      padding=((0, 1), (0, 1)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    )
  y = y.reshape(n, h, w, 2, 2, features).transpose(0, 1, 3, 2, 4, 5)
  y = y.reshape(n, 2 * h, 2 * w, features)
  if bias is not None:
    y = y + bias
  return y


def _shifted_sum(p: jax.Array, size: int, out_h: int, out_w: int) -> jax.Array:
  """y[h, w] = Σ_{i,j} p[h + i, w + j, tap (i, j)] for p of shape (N, Hp, Wp, size², C)."""
  y = None
  for i in range(size):
    for j in range(size):
      term = p[:, i : i + out_h, j : j + out_w, i * size + j, :]
      y = term if y is None else y + term
  return y


def _shifted_stack(dy: jax.Array, size: int) -> jax.Array:
  """The transpose of `_shifted_sum`, tap-major: dp[(i, j), n, h + i, w + j] = dy[n, h, w].

  Tap-major (each tap one contiguous padded copy of dy) builds faster on CPU than
  interleaving the taps in the channel axis.
  """
  pad = size - 1
  return jnp.stack(
    [
      jnp.pad(dy, ((0, 0), (i, pad - i), (j, pad - j), (0, 0)))
      for i in range(size)
      for j in range(size)
    ]
  )


def _varying_axes(x: jax.Array) -> frozenset:
  """The manual mesh axes that x varies over inside `jax.shard_map` (empty outside)."""
  return getattr(getattr(jax.typeof(x), 'mat', None), 'varying', frozenset())


def _vary_like(x: jax.Array, axes: frozenset) -> jax.Array:
  """Marks x as varying over `axes` too (a no-op outside `jax.shard_map`)."""
  missing = tuple(axis for axis in axes if axis not in _varying_axes(x))
  return jax.lax.pcast(x, missing, to='varying') if missing else x


def _common_variance(x: jax.Array, kernel: jax.Array) -> tuple[jax.Array, jax.Array]:
  """x and kernel, both varying over the manual axes either varies over.

  Inside shard_map a replicated kernel meets a per-device batch. Ordinary ops cast the
  kernel to "varying" implicitly, and that cast's transpose sums its gradient over the
  devices; a custom_vjp must return the kernel's cotangent with the kernel's own type,
  so the cast has to happen before it, where autodiff sees it.
  """
  axes = _varying_axes(x) | _varying_axes(kernel)
  return _vary_like(x, axes), _vary_like(kernel, axes)


def shifted_matmul_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """A VALID, stride-1, unbiased k×k convolution, fast on CPU for few output channels.

  Equals `lax.conv_general_dilated(x, kernel, (1, 1), 'VALID')` in NHWC/HWIO to float
  rounding. Forward: project every input pixel to all k²·Cout tap outputs with one matmul,
  then sum the k² shifted slices. Backward (custom): dx is an ordinary k×k conv Cout → Cin
  of the padded cotangent; dkernel is one contraction of x against the k² shifted copies
  of the cotangent.

  Args:
    x: (N, Hp, Wp, Cin) input, already padded.
    kernel: (k, k, Cin, Cout) HWIO kernel.

  Returns:
    The (N, Hp − k + 1, Wp − k + 1, Cout) output.
  """
  return _shifted_matmul_conv(*_common_variance(x, kernel))


@jax.custom_vjp
def _shifted_matmul_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return _shifted_matmul_conv_fwd(x, kernel)[0]


def _shifted_matmul_conv_fwd(
  x: jax.Array, kernel: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  size, _, in_features, features = kernel.shape
  n, hp, wp, _ = x.shape
  # (Cin, k²·Cout): column block t = i·k + j holds tap (i, j).
  w = kernel.transpose(2, 0, 1, 3).reshape(in_features, size * size * features)
  p = jnp.dot(x, w).reshape(n, hp, wp, size * size, features)
  y = _shifted_sum(p, size, hp - size + 1, wp - size + 1)
  return y, (x, kernel)


def _shifted_matmul_conv_bwd(
  residuals: tuple[jax.Array, jax.Array], dy: jax.Array
) -> tuple[jax.Array, jax.Array]:
  x, kernel = residuals
  size, _, in_features, features = kernel.shape
  pad = size - 1
  # dx is the full correlation of dy with the flipped, in/out-swapped kernel: an ordinary
  # conv Cout → Cin, which XLA runs fast (unlike the transpose of the shifted adds).
  dx = jax.lax.conv_general_dilated(
    jnp.pad(dy, ((0, 0), (pad, pad), (pad, pad), (0, 0))),
    kernel[::-1, ::-1].transpose(0, 1, 3, 2),
    window_strides=(1, 1),
    padding='VALID',
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )
  # dkernel[i, j] = Σ_{n,h,w} x[n, h + i, w + j] ⊗ dy[n, h, w]: one contraction over all
  # padded positions against the shifted stack of dy (the small, Cout-channel side).
  dp = _shifted_stack(dy, size).reshape(size * size, -1, features)
  dkernel = jnp.einsum('pc,tpo->tco', x.reshape(-1, in_features), dp)
  dkernel = dkernel.reshape(size, size, in_features, features)
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


_shifted_matmul_conv.defvjp(_shifted_matmul_conv_fwd, _shifted_matmul_conv_bwd)


@dataclasses.dataclass(frozen=True)
class Forms:
  """Which of the exact rewrites a network computes with (each one is exact on its own).

  Attributes:
    subpixel: the stride-2 transposed convs as sub-pixel convs (`subpixel_conv_transpose`).
    head: the generator's last 7×7 conv to few channels as a projection plus shifted adds
      (`shifted_matmul_conv`).
    winograd: in float32, the 3×3 stride-1 convs by Winograd's minimal filtering
      (`winograd_conv3x3`: F(2×2, 3×3), or F(4×4, 3×3) for outputs of 40² and more).
    matmul_convs: every conv that Winograd does not take (the sub-pixel conv's inner
      2×2 conv included) as row-major matmuls: `im2col_conv` in float32 (and for the
      bfloat16 stem), `matmul_conv` / `stride2_conv` in bfloat16 (see `conv_form`).
  """

  subpixel: bool = False
  head: bool = False
  winograd: bool = False
  matmul_convs: bool = False


PLAIN = Forms()
ALL = Forms(subpixel=True, head=True, winograd=True, matmul_convs=True)

# The rewrites measured to make each backend faster, per compute dtype
# (docs/cpu_conv_forms.md; benchmarks/layers.py). An unlisted backend keeps PLAIN.
MEASURED_FORMS: dict[str, dict[str, Forms]] = {
  'cpu': {'float32': ALL, 'bfloat16': ALL},
  'gpu': {'float32': Forms(subpixel=True, head=True), 'bfloat16': Forms(subpixel=True)},
}


# Overrides auto mode for every network of the process: 'off' (the plain layers; the
# tests use it, since the rewrites compile slower), 'on' (all of them) or 'auto'.
FAST_LAYERS_ENV = 'CYCLEGAN_JAX_FAST_LAYERS'


def _env_setting() -> bool | None:
  value = os.environ.get(FAST_LAYERS_ENV, 'auto').strip().lower()
  if value not in ('auto', 'on', 'off'):
    raise ValueError(f'{FAST_LAYERS_ENV}={value!r}: use auto, on or off.')
  return None if value == 'auto' else value == 'on'


def resolve_forms(
  fast_layers: bool | None, dtype: jax.typing.DTypeLike, backend: str | None = None
) -> Forms:
  """Resolves a model's `fast_layers` setting to the rewrites it computes with.

  Args:
    fast_layers: True: every rewrite (`ALL`); False: none (`PLAIN`); None: as
      $CYCLEGAN_JAX_FAST_LAYERS says (on / off), else (auto, the default) the ones
      measured to win on this backend in this dtype (`MEASURED_FORMS`).
    dtype: the compute dtype.
    backend: the backend to pick for; default `jax.default_backend()`.

  Returns:
    The `Forms` to use.
  """
  if fast_layers is None:
    fast_layers = _env_setting()
  if fast_layers is not None:
    return ALL if fast_layers else PLAIN
  backend = backend or jax.default_backend()
  return MEASURED_FORMS.get(backend, {}).get(jnp.dtype(dtype).name, PLAIN)


def conv_form(
  forms: Forms, dtype: jax.typing.DTypeLike, kernel_size: int, stride: int
) -> Callable[[jax.Array, jax.Array], jax.Array] | None:
  """The exact fast form a VALID (N, Hp, Wp, Cin) × HWIO convolution runs as, or None.

  - float32 3×3 stride 1, with `forms.winograd`: `winograd_conv3x3`.
  - Any other conv, with `forms.matmul_convs`: in float32 `im2col_conv` (one product per
    pass); in bfloat16 the per-tap projections of `matmul_conv` / `stride2_conv`, whose
    row-major products XLA:CPU sends to the matrix units, except the 7×7 stem's: on 3 channels its 49 taps
    are cheaper gathered (`im2col_conv`).

  Winograd is float32 only: in bfloat16 its transforms would add rounding to an 8-bit
  mantissa, and the matmul forms are faster there (docs/cpu_conv_forms.md).

  Returns None where XLA's own convolution is kept; else a function of (x, kernel) that
  returns the output in `dtype`.
  """
  dtype = jnp.dtype(dtype)
  if forms.winograd and dtype == jnp.float32 and kernel_size == 3 and stride == 1:
    return lambda x, kernel: winograd_conv3x3(x.astype(dtype), kernel)
  if not forms.matmul_convs:
    return None
  if dtype == jnp.bfloat16 and kernel_size < 7:
    form = matmul_conv if stride == 1 else stride2_conv
    return lambda x, kernel: form(x, kernel, dtype)
  return lambda x, kernel: im2col_conv(x, kernel, stride, dtype)


def matmul_conv(
  x: jax.Array, kernel: jax.Array, dtype: jax.typing.DTypeLike | None = None
) -> jax.Array:
  """A VALID, stride-1 k×k convolution as row-major matrix products, forward and backward.

  Equals `lax.conv_general_dilated(x, kernel, (1, 1), 'VALID')` (NHWC/HWIO) to float
  rounding. XLA:CPU runs a row-major (M, K) × (K, N) matmul much faster than its
  convolutions (in bfloat16 on the CPU's matrix units), so each pass is one such product
  plus a cheap, fused gather or scatter:

  - forward: P = x · [W₀ … W_{k²−1}] over every padded pixel, then y = Σ_t shift_t(P_t);
  - input gradient: Q = dy · [W₀ᵀ … W_{k²−1}ᵀ], then dx = Σ_t pad_t(Q_t) (col2im);
  - kernel gradient: colsᵀ · dy, with colsᵀ (k²·Cin, M) stacked from the channel-major
    input, so the product is row-major on both sides.

  Args:
    x: (N, Hp, Wp, Cin) input, already padded.
    kernel: (k_h, k_w, Cin, Cout) HWIO kernel, typically float32 parameters: its
      gradient comes back in its own dtype, accumulated in float32.
    dtype: compute dtype of the products (default: x's); accumulation is float32.

  Returns:
    The (N, Hp − k_h + 1, Wp − k_w + 1, Cout) output in the compute dtype.
  """
  dtype = jnp.dtype(dtype or x.dtype)
  return _matmul_conv(*_common_variance(x.astype(dtype), kernel))


@jax.custom_vjp
def _matmul_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return _matmul_conv_fwd(x, kernel)[0]


def _matmul_conv_fwd(
  x: jax.Array, kernel: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  kh, kw, cin, cout = kernel.shape
  n, hp, wp, _ = x.shape
  ho, wo = hp - kh + 1, wp - kw + 1
  w = kernel.astype(x.dtype).transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)
  p = jnp.dot(x.reshape(n * hp * wp, cin), w, preferred_element_type=jnp.float32)
  p = p.reshape(n, hp, wp, kh * kw, cout)
  y = sum(
    p[:, i : i + ho, j : j + wo, i * kw + j, :] for i in range(kh) for j in range(kw)
  )
  return y.astype(x.dtype), (x, kernel)


def _matmul_conv_bwd(
  residuals: tuple[jax.Array, jax.Array], dy: jax.Array
) -> tuple[jax.Array, jax.Array]:
  x, kernel = residuals
  kh, kw, cin, cout = kernel.shape
  n, hp, wp, _ = x.shape
  ho, wo = hp - kh + 1, wp - kw + 1
  dy = dy.astype(x.dtype).reshape(n * ho * wo, cout)
  # Input gradient: every output pixel's cotangent through every tap, then each tap's
  # block added back at its window offset.
  w_t = kernel.astype(x.dtype).transpose(3, 0, 1, 2).reshape(cout, kh * kw * cin)
  q = jnp.dot(dy, w_t, preferred_element_type=jnp.float32).reshape(
    n, ho, wo, kh * kw, cin
  )
  dx = sum(
    jnp.pad(q[:, :, :, i * kw + j, :], ((0, 0), (i, kh - 1 - i), (j, kw - 1 - j), (0, 0)))
    for i in range(kh)
    for j in range(kw)
  )
  # Kernel gradient: dW_tᵀ = dyᵀ · x_t. In "wide rows" (each output row padded to the
  # input's width with zero cotangents), tap t's window is one contiguous run of the
  # flattened input starting at i·Wp + j, so every product is row-major with no gather.
  rows = ho * wp
  dy_wide = jnp.pad(dy.reshape(n, ho, wo, cout), ((0, 0), (0, 0), (0, wp - wo), (0, 0)))
  dy_wide_t = dy_wide.reshape(n, rows, cout).transpose(0, 2, 1)
  x_flat = jnp.pad(x.reshape(n, hp * wp, cin), ((0, 0), (0, kw - 1), (0, 0)))
  dkernel_t = jnp.stack(
    [
      sum(
        jnp.dot(
          dy_wide_t[b],
          x_flat[b, i * wp + j : i * wp + j + rows],
          preferred_element_type=jnp.float32,
        )
        for b in range(n)
      )
      for i in range(kh)
      for j in range(kw)
    ]
  )
  dkernel = dkernel_t.reshape(kh, kw, cout, cin).transpose(0, 1, 3, 2)
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


_matmul_conv.defvjp(_matmul_conv_fwd, _matmul_conv_bwd)


def im2col_conv(
  x: jax.Array,
  kernel: jax.Array,
  stride: int = 1,
  dtype: jax.typing.DTypeLike | None = None,
) -> jax.Array:
  """A VALID k×k convolution as one matmul over gathered windows (im2col).

  Equals `lax.conv_general_dilated(x, kernel, (stride, stride), 'VALID')` (NHWC/HWIO)
  to float rounding. cols = the k² (strided) windows of x side by side, (M, k²·Cin);
  y = cols · W; dW = colsᵀ · dy; dx = the k² column blocks of dy · Wᵀ added back at
  their offsets (with stride − 1 zeros between). Each product's output is exactly the
  result, with no k²-times larger intermediate to sum down (which XLA would recompute
  inside its consumers), and no separate weight-gradient convolution, which XLA:CPU runs
  at a fraction of its matmul speed.

  Args:
    x: (N, Hp, Wp, Cin) input, already padded.
    kernel: (k_h, k_w, Cin, Cout) HWIO kernel.
    stride: the stride in both spatial dimensions.
    dtype: compute dtype of the products (default: x's); accumulation is float32.

  Returns:
    The (N, (Hp − k_h) // stride + 1, (Wp − k_w) // stride + 1, Cout) output in the
    compute dtype.
  """
  dtype = jnp.dtype(dtype or x.dtype)
  return _im2col_conv(*_common_variance(x.astype(dtype), kernel), stride)


def _im2col(x: jax.Array, kh: int, kw: int, stride: int) -> jax.Array:
  """(N, Ho, Wo, k_h·k_w·Cin): the windows, tap-major, as HWIO's (k_h, k_w, Cin) order."""
  _, hp, wp, _ = x.shape
  ho, wo = (hp - kh) // stride + 1, (wp - kw) // stride + 1
  return jnp.concatenate(
    [
      x[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
      for i in range(kh)
      for j in range(kw)
    ],
    axis=-1,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _im2col_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  return _im2col_conv_fwd(x, kernel, stride)[0]


def _im2col_conv_fwd(
  x: jax.Array, kernel: jax.Array, stride: int
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  kh, kw, cin, cout = kernel.shape
  cols = _im2col(x, kh, kw, stride)
  y = jnp.dot(
    cols.reshape(-1, kh * kw * cin),
    kernel.astype(x.dtype).reshape(-1, cout),
    preferred_element_type=jnp.float32,
  )
  return y.reshape(*cols.shape[:3], cout).astype(x.dtype), (x, kernel)


def _im2col_conv_bwd(
  stride: int, residuals: tuple[jax.Array, jax.Array], dy: jax.Array
) -> tuple[jax.Array, jax.Array]:
  x, kernel = residuals
  kh, kw, cin, cout = kernel.shape
  n, hp, wp, _ = x.shape
  ho, wo = dy.shape[1], dy.shape[2]
  dy = dy.astype(x.dtype).reshape(-1, cout)
  w = kernel.astype(x.dtype).reshape(-1, cout)
  dcols = jnp.dot(dy, w.T, preferred_element_type=jnp.float32).reshape(n, ho, wo, -1)
  zero = jnp.zeros((), dcols.dtype)

  def place(
    t: int, i: int, j: int
  ) -> jax.Array:  # Tap (i, j)'s block back at its offset.
    block = dcols[..., t * cin : (t + 1) * cin]
    return jax.lax.pad(
      block,
      zero,
      (
        (0, 0, 0),
        (i, hp - i - stride * (ho - 1) - 1, stride - 1),
        (j, wp - j - stride * (wo - 1) - 1, stride - 1),
        (0, 0, 0),
      ),
    )

  dx = sum(place(i * kw + j, i, j) for i in range(kh) for j in range(kw))
  dkernel = jnp.einsum(
    'mk,mo->ko',
    _im2col(x, kh, kw, stride).reshape(-1, kh * kw * cin),
    dy,
    preferred_element_type=jnp.float32,
  )
  return dx.astype(x.dtype), dkernel.reshape(kernel.shape).astype(kernel.dtype)


_im2col_conv.defvjp(_im2col_conv_fwd, _im2col_conv_bwd)


def space_to_depth_kernel(kernel: jax.Array) -> jax.Array:
  """A (k, k, Cin, Cout) stride-2 kernel as the (⌈k/2⌉, ⌈k/2⌉, 4·Cin, Cout) stride-1
  kernel of the space-to-depth input (channels ordered (row phase, column phase, Cin)).
  An odd k gets a zero last tap row and column."""
  size, _, cin, cout = kernel.shape
  half = (size + 1) // 2
  kernel = jnp.pad(kernel, ((0, 2 * half - size), (0, 2 * half - size), (0, 0), (0, 0)))
  kernel = kernel.reshape(half, 2, half, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5)
  return kernel.reshape(half, half, 4 * cin, cout)


def space_to_depth(x: jax.Array) -> jax.Array:
  """(N, 2H, 2W, C) → (N, H, W, 4·C), channels ordered (row phase, column phase, C)."""
  n, h, w, c = x.shape
  x = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(n, h // 2, w // 2, 4 * c)


def stride2_conv(
  x: jax.Array, kernel: jax.Array, dtype: jax.typing.DTypeLike | None = None
) -> jax.Array:
  """A VALID, stride-2 k×k convolution as a stride-1 `matmul_conv` after space-to-depth.

  Equals `lax.conv_general_dilated(x, kernel, (2, 2), 'VALID')` (NHWC/HWIO) to float
  rounding: output pixel (h, w) reads input rows 2h … 2h + k − 1, i.e. the ⌈k/2⌉
  space-to-depth rows h … h + ⌈k/2⌉ − 1 with every phase. An odd k costs the zero taps
  of one padded row and column ((k+1)²/k² the multiply-adds: 16/9 for 3×3).

  Args:
    x: (N, Hp, Wp, Cin) input, already padded.
    kernel: (k, k, Cin, Cout) HWIO kernel.
    dtype: compute dtype (default: x's).

  Returns:
    The (N, (Hp − k) // 2 + 1, (Wp − k) // 2 + 1, Cout) output in the compute dtype.
  """
  size = kernel.shape[0]
  half = (size + 1) // 2
  n, hp, wp, _ = x.shape
  out_h, out_w = (hp - size) // 2 + 1, (wp - size) // 2 + 1
  # Exactly the rows/columns the windows read, zero-extended to 2·(out + half − 1).
  rows, cols = 2 * (out_h + half - 1), 2 * (out_w + half - 1)
  x = x[:, : min(rows, hp), : min(cols, wp)]
  x = jnp.pad(x, ((0, 0), (0, rows - x.shape[1]), (0, cols - x.shape[2]), (0, 0)))
  return matmul_conv(space_to_depth(x), space_to_depth_kernel(kernel), dtype)


@dataclasses.dataclass(frozen=True)
class WinogradTile:
  """Winograd's minimal filtering F(m×m, 3×3): m×m outputs from each (m+2)² input tile.

  Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A per tile (Lavin & Gray 2016): (m+2)² products per
  channel pair instead of 9·m², at the cost of more transform work and, for larger m,
  more rounding (the constants grow).

  Attributes:
    m: output tile side; input tiles are m + 2 wide and start every m pixels.
    bt: Bᵀ, (m+2, m+2), the input transform.
    g: G, (m+2, 3), the kernel transform.
    at: Aᵀ, (m, m+2), the output transform.
  """

  m: int
  bt: np.ndarray
  g: np.ndarray
  at: np.ndarray

  @property
  def size(self) -> int:
    """The input tile's side, m + 2."""
    return self.m + 2

  @property
  def g_kron_g(self) -> np.ndarray:
    """G ⊗ G, ((m+2)², 9): U[a, b] = Σ_{i,j} G[a, i] G[b, j] g[i, j] is its row
    (m+2)·a + b times the 9 taps of g, flattened row-major."""
    return np.kron(self.g, self.g)


# F(2×2, 3×3): 16 products per 4 outputs (2.25× fewer than direct); the transforms only
# add, subtract and halve (relative error ~1e-6 in float32).
F2X2 = WinogradTile(
  m=2,
  bt=np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float32),
  g=np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32),
  at=np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float32),
)

# F(4×4, 3×3), points 0, ±1, ±2, ∞: 36 products per 16 outputs (4× fewer than direct);
# relative error ~1e-5 in float32.
F4X4 = WinogradTile(
  m=4,
  bt=np.array(
    [
      [4, 0, -5, 0, 1, 0],
      [0, -4, -4, 1, 1, 0],
      [0, 4, -4, -1, 1, 0],
      [0, -2, -1, 2, 1, 0],
      [0, 2, -1, -2, 1, 0],
      [0, 4, 0, -5, 0, 1],
    ],
    np.float32,
  ),
  g=np.array(
    [
      [1 / 4, 0, 0],
      [-1 / 6, -1 / 6, -1 / 6],
      [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6],
      [1 / 24, -1 / 12, 1 / 6],
      [0, 0, 1],
    ],
    np.float32,
  ),
  at=np.array(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    np.float32,
  ),
)

WINOGRAD_TILES = {2: F2X2, 4: F4X4}

# F(4×4) wins from about 40×40 outputs on XLA:CPU (docs/cpu_conv_forms.md).
F4X4_MIN_OUTPUT = 40


def winograd_tile_for(out_h: int, out_w: int) -> int:
  """The tile side `winograd_conv3x3` uses for an out_h × out_w output by default."""
  return 4 if min(out_h, out_w) >= F4X4_MIN_OUTPUT else 2


def _combine(matrix: np.ndarray, parts: list[jax.Array]) -> list[jax.Array]:
  """[Σ_j matrix[i, j] · parts[j] for each row i], skipping zeros and ±1 multiplies."""
  out = []
  for row in matrix:
    total = None
    for coefficient, part in zip(row.tolist(), parts):
      if coefficient == 0:
        continue
      term = (
        part
        if coefficient == 1
        else -part
        if coefficient == -1
        else part * jnp.asarray(coefficient, part.dtype)
      )
      total = term if total is None else total + term
    out.append(jnp.zeros_like(parts[0]) if total is None else total)
  return out


def _phase_views(
  x: jax.Array, axis: int, tiles: int, tile: WinogradTile
) -> list[jax.Array]:
  """The m+2 views x[r::m][:tiles] along `axis`, r = 0 … m+1: row r of every
  overlapping input tile, one array per offset."""
  views = []
  for r in range(tile.size):
    start, limit, strides = [0] * x.ndim, list(x.shape), [1] * x.ndim
    start[axis], limit[axis], strides[axis] = r, r + tile.m * (tiles - 1) + 1, tile.m
    views.append(jax.lax.slice(x, start, limit, strides))
  return views


def _overlap_add(parts: list[jax.Array], axis: int, tile: WinogradTile) -> jax.Array:
  """The transpose of cutting overlapping (m+2)-wide, stride-m tiles along `axis`.

  parts[r] holds, for every tile p, the gradient of the tile's row r, i.e. of input row
  m·p + r. Input row m·q + s collects row s of tile q and, for s < 2, row m + s of tile
  q − 1. Returns the (m·tiles + 2)-long axis, the m phases interleaved.
  """

  def shift(x: jax.Array, before: int) -> jax.Array:  # Tile q − 1 (before) or q.
    pad = [(0, 0)] * x.ndim
    pad[axis] = (before, 1 - before)
    return jnp.pad(x, pad)

  phases = [
    shift(parts[s], 0) + shift(parts[s + tile.m], 1)
    if s + tile.m < tile.size
    else shift(parts[s], 0)
    for s in range(tile.m)
  ]
  shape = list(phases[0].shape)
  shape[axis] *= tile.m
  return jnp.stack(phases, axis=axis + 1).reshape(shape)[
    (slice(None),) * axis + (slice(0, shape[axis] - tile.m + 2),)
  ]


def winograd_conv3x3(
  x: jax.Array, kernel: jax.Array, tile: int | None = None
) -> jax.Array:
  """A VALID, stride-1 3×3 convolution by Winograd's minimal filtering F(m×m, 3×3).

  Equals `lax.conv_general_dilated(x, kernel, (1, 1), 'VALID')` (NHWC/HWIO) to float
  rounding (relative error ~1e-6 in float32 with 2×2 tiles, ~1e-5 with 4×4). Each m×m
  output tile needs (m+2)² products per channel pair instead of 9·m², so the
  convolution becomes (m+2)² matmuls (T tiles × Cin) · (Cin × Cout) with 2.25× (m = 2)
  or 4× (m = 4) fewer multiply-adds, between cheap elementwise transforms. The backward
  (a custom VJP) stays in the Winograd domain: dV = dM · Uᵀ and dU = Vᵀ · dM as
  row-major batched matmuls, then the transposed transforms (an overlap-add of the
  tiles for dx). Output sizes that m does not divide get zero tiles, cropped.

  Args:
    x: (N, Hp, Wp, Cin) input, already padded.
    kernel: (3, 3, Cin, Cout) HWIO kernel.
    tile: output tile side, 2 or 4 (`WINOGRAD_TILES`); None: `winograd_tile_for` the
      output size.

  Returns:
    The (N, Hp − 2, Wp − 2, Cout) output in x's dtype.
  """
  if tile is None:
    tile = winograd_tile_for(x.shape[1] - 2, x.shape[2] - 2)
  if tile not in WINOGRAD_TILES:
    raise ValueError(
      f'Winograd tile must be one of {sorted(WINOGRAD_TILES)}, got {tile}.'
    )
  return _winograd(*_common_variance(x, kernel.astype(x.dtype)), tile)


def _winograd_tiles(
  x: jax.Array, tile: WinogradTile
) -> tuple[jax.Array, tuple[int, int]]:
  """V = Bᵀ d B of every input tile, ((m+2)², N·tiles_h·tiles_w, Cin), and the tiling."""
  n, hp, wp, cin = x.shape
  tiles_h, tiles_w = -(-(hp - 2) // tile.m), -(-(wp - 2) // tile.m)
  x = jnp.pad(
    x, ((0, 0), (0, tile.m * tiles_h + 2 - hp), (0, tile.m * tiles_w + 2 - wp), (0, 0))
  )
  v = jnp.stack(
    [
      col
      for row in _combine(tile.bt, _phase_views(x, 1, tiles_h, tile))
      for col in _combine(tile.bt, _phase_views(row, 2, tiles_w, tile))
    ]
  )
  return v.reshape(tile.size**2, n * tiles_h * tiles_w, cin), (tiles_h, tiles_w)


def _winograd_kernel(kernel: jax.Array, tile: WinogradTile) -> jax.Array:
  """U = G g Gᵀ of every (Cin, Cout) pair: ((m+2)², Cin, Cout).

  One product against the constant G ⊗ G rather than (m+2)² weighted sums, which
  XLA:CPU ran as that many fusions and a separate concatenation. HIGHEST keeps it exact
  in float32 where a backend would otherwise round a float32 dot's inputs (TPU, TF32).
  """
  _, _, cin, cout = kernel.shape
  u = jnp.dot(
    jnp.asarray(tile.g_kron_g, kernel.dtype),
    kernel.reshape(9, cin * cout),
    precision=jax.lax.Precision.HIGHEST,
  )
  return u.reshape(tile.size**2, cin, cout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _winograd(x: jax.Array, kernel: jax.Array, tile: int) -> jax.Array:
  return _winograd_fwd(x, kernel, tile)[0]


def _winograd_fwd(
  x: jax.Array, kernel: jax.Array, tile: int
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  t = WINOGRAD_TILES[tile]
  n, hp, wp, _ = x.shape
  cout = kernel.shape[-1]
  v, (tiles_h, tiles_w) = _winograd_tiles(x, t)
  products = jnp.einsum('etc,eco->eto', v, _winograd_kernel(kernel, t))
  products = products.reshape(t.size, t.size, n, tiles_h, tiles_w, cout)
  # Y = Aᵀ M A, then the m×m outputs of each tile back into place.
  y = jnp.stack(
    [
      jnp.stack(_combine(t.at, [row[j] for j in range(t.size)]))
      for row in _combine(t.at, [products[i] for i in range(t.size)])
    ]
  )
  y = y.transpose(2, 3, 0, 4, 1, 5).reshape(n, t.m * tiles_h, t.m * tiles_w, cout)
  return y[:, : hp - 2, : wp - 2], (x, kernel)


def _winograd_bwd(
  tile: int, residuals: tuple[jax.Array, jax.Array], dy: jax.Array
) -> tuple[jax.Array, jax.Array]:
  t = WINOGRAD_TILES[tile]
  x, kernel = residuals
  n, hp, wp, cin = x.shape
  cout = kernel.shape[-1]
  v, (tiles_h, tiles_w) = _winograd_tiles(x, t)
  # dM = A dY Aᵀ of every output tile: ((m+2)², T, Cout).
  dy = jnp.pad(
    dy,
    ((0, 0), (0, t.m * tiles_h - dy.shape[1]), (0, t.m * tiles_w - dy.shape[2]), (0, 0)),
  )
  dy = dy.reshape(n, tiles_h, t.m, tiles_w, t.m, cout)
  dm = jnp.stack(
    [
      col
      for row in _combine(t.at.T, [dy[:, :, a] for a in range(t.m)])
      for col in _combine(t.at.T, [row[:, :, :, b] for b in range(t.m)])
    ]
  )
  dm = dm.reshape(t.size**2, n * tiles_h * tiles_w, cout)
  # Row-major batched products on both sides (the transposes are materialised).
  u_t = _winograd_kernel(kernel, t).transpose(0, 2, 1)
  dv = jnp.einsum('eto,eoc->etc', dm, u_t)
  dv = dv.reshape(t.size, t.size, n, tiles_h, tiles_w, cin)
  # (The barrier keeps XLA from folding the transpose back into the product, which
  # would make it column-major and several times slower on CPU.)
  v_t = jax.lax.optimization_barrier(v.transpose(0, 2, 1))
  du = jnp.einsum('ect,eto->eco', v_t, dm)
  # dg = Gᵀ dU G: the transpose of `_winograd_kernel`'s product.
  dkernel = jnp.dot(
    jnp.asarray(t.g_kron_g.T, du.dtype),
    du.reshape(-1, cin * cout),
    precision=jax.lax.Precision.HIGHEST,
  ).reshape(3, 3, cin, cout)
  # dx = B dV Bᵀ, each tile added back where it was cut: columns, then rows.
  dx_rows = [
    _overlap_add(_combine(t.bt.T, [dv[i, j] for j in range(t.size)]), 2, t)
    for i in range(t.size)
  ]
  dx = _overlap_add(_combine(t.bt.T, dx_rows), 1, t)
  return dx[:, :hp, :wp], dkernel


_winograd.defvjp(_winograd_fwd, _winograd_bwd)
