"""The stride-2 transposed conv as a sub-pixel conv (exact; ordinary-conv gradients).

PyTorch's `ConvTranspose2d(k=3, s=2, p=1, output_padding=1)` (the ResNet generator's) as
one ordinary 2×2 convolution to 4·Cout channels (one group per output phase) followed by
a depth-to-space shuffle; `ConvTranspose2d(k=4, s=2, p=1)` (the U-Net's) likewise with a
3×3 convolution. XLA:CPU differentiates the dilated convolution of the plain layer slowly; this
form's autodiff backward is made of ordinary convs.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

# Which tap of the 3-tap transposed kernel feeds output phase a (0: even rows, 1: odd rows)
# from input row m + d, d ∈ {0, 1}. From o = 2i − p + k with p = 1: an even output 2m sees
# only x[m] through tap 1; an odd output 2m+1 sees x[m] through tap 2 and x[m+1] through
# tap 0. None means the phase does not use that input row (a zero tap).
_PHASE_TAPS = ((1, None), (2, 0))
# The same for k = 4 from the input padded by one: an even output 2m sees x[m − 1]
# through tap 3 and x[m] through tap 1; an odd one x[m] through 2 and x[m + 1] through 0.
_PHASE_TAPS_K4 = ((3, 1, None), (None, 2, 0))
# Kernel size -> (phase taps, the input's zero padding (before, after) per side).
_LAYOUTS = {3: (_PHASE_TAPS, (0, 1)), 4: (_PHASE_TAPS_K4, (1, 1))}


def subpixel_kernel(kernel: jax.Array) -> jax.Array:
  """Rearranges a (k, k, out, in) transposed-conv kernel (k = 3 or 4) into a sub-pixel
  kernel of side k − 1.

  Args:
    kernel: the kernel as `nn.ConvTranspose(transpose_kernel=True)` stores it, i.e. the
      PyTorch IOHW weight transposed to HWOI (no spatial flip).

  Returns:
    A (k − 1, k − 1, in, 4·out) HWIO kernel whose output channels are ordered (row
    phase, column phase, out).
  """
  size, _, features, in_features = kernel.shape
  taps = _LAYOUTS[size][0]
  zeros = jnp.zeros((in_features, features), kernel.dtype)
  rows = []
  for dh in range(size - 1):
    cols = []
    for dw in range(size - 1):
      phases = []
      for a in range(2):
        for b in range(2):
          th, tw = taps[a][dh], taps[b][dw]
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
  """`ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)` (a (3, 3, ...)
  kernel) or `ConvTranspose2d(k=4, stride=2, padding=1)` (a (4, 4, ...) one) via
  sub-pixel conv.

  Equals `nn.ConvTranspose(features, (3, 3), strides=(2, 2), padding=((1, 2), (1, 2)),
  transpose_kernel=True)` (for k = 4: `(4, 4)`, padding `((2, 2), (2, 2))`) with the same
  kernel, to float rounding, but its gradients are ordinary convolutions (or whatever
  `conv` computes its (k − 1)² conv as) instead of a dilated one.

  Args:
    x: (N, H, W, in) input.
    kernel: (k, k, out, in) kernel in `nn.ConvTranspose(transpose_kernel=True)` layout.
    bias: optional (out,) bias.
    conv: the form of the inner VALID (k − 1)² conv, (padded x, HWIO kernel) → y, e.g.
      `conv_form(forms, dtype, k - 1, 1)`; None: XLA's convolution.

  Returns:
    The (N, 2H, 2W, out) output, in the dtype of `x`.
  """
  n, h, w, _ = x.shape
  features = kernel.shape[2]
  # k = 3: each output phase needs the input row/column m and m + 1, the last m + 1 the
  # zero border that output_padding adds; k = 4: m − 1 to m + 1.
  pad = _LAYOUTS[kernel.shape[0]][1]
  if conv is not None:
    y = conv(jnp.pad(x, ((0, 0), pad, pad, (0, 0))), subpixel_kernel(kernel))
  else:
    y = jax.lax.conv_general_dilated(
      x,
      subpixel_kernel(kernel),
      window_strides=(1, 1),
      padding=(pad, pad),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    )
  y = y.reshape(n, h, w, 2, 2, features).transpose(0, 1, 3, 2, 4, 5)
  y = y.reshape(n, 2 * h, 2 * w, features)
  if bias is not None:
    y = y + bias
  return y
