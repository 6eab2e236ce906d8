"""A stride-2 convolution as a stride-1 `matmul_conv` of the space-to-depth input."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cyclegan_jax.nets.cpu_forms.shifted_matmul import matmul_conv


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
