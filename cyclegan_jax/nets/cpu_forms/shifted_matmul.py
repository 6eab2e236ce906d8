"""Convolutions as per-tap projections plus shifted adds, with custom backwards.

- `shifted_matmul_conv`: a VALID k×k convolution with few output channels (the
  generator's head) as a 1×1 projection to k²·Cout channels plus k² shifted adds; dx as
  an ordinary k×k conv Cout → Cin, dkernel as one contraction against shifted copies of
  the cotangent (the autodiff backward of the shifted adds is very slow on CPU).
- `matmul_conv`: any VALID stride-1 conv the same way, but every pass (forward, dx,
  dkernel) a row-major matmul, which XLA:CPU runs on its matrix units in bfloat16.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cyclegan_jax.nets.cpu_forms.variance import common_variance


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
  return _shifted_matmul_conv(*common_variance(x, kernel))


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
  return _matmul_conv(*common_variance(x.astype(dtype), kernel))


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
