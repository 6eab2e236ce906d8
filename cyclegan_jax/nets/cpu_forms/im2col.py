"""A VALID k×k convolution as one matmul over gathered windows (im2col), with a custom
backward of matmuls and a col2im scatter."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from cyclegan_jax.nets.cpu_forms.variance import common_variance


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
  return _im2col_conv(*common_variance(x.astype(dtype), kernel), stride)


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
