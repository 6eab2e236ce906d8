"""Which exact rewrites a network computes with, and the form each conv runs as.

A network's `conv_impl` (`nets.spec.RESOLVED_CONV_IMPLS`, resolved from
`config.model.conv_impl` when the network is built) names a `Forms` per compute dtype
(`IMPL_FORMS`); `conv_form` then picks each convolution's form.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from cyclegan_jax.nets import spec
from cyclegan_jax.nets.cpu_forms.im2col import im2col_conv
from cyclegan_jax.nets.cpu_forms.shifted_matmul import matmul_conv
from cyclegan_jax.nets.cpu_forms.space_to_depth import stride2_conv
from cyclegan_jax.nets.cpu_forms.winograd import winograd_conv3x3


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

# The rewrites of each conv impl per compute dtype: 'cpu' every one, 'gpu' those
# measured to make GPUs faster (docs/cpu_conv_forms.md; benchmarks/layers.py).
IMPL_FORMS: dict[str, dict[str, Forms]] = {
  'xla': {'float32': PLAIN, 'bfloat16': PLAIN},
  'cpu': {'float32': ALL, 'bfloat16': ALL},
  'gpu': {'float32': Forms(subpixel=True, head=True), 'bfloat16': Forms(subpixel=True)},
}


def forms_for(conv_impl: str, dtype: jax.typing.DTypeLike) -> Forms:
  """The rewrites a network of resolved `conv_impl` computes with in `dtype`.

  Args:
    conv_impl: one of `spec.RESOLVED_CONV_IMPLS` ('auto' is resolved when the network
      is built: `spec.resolve_conv_impl`).
    dtype: the compute dtype.

  Raises:
    ValueError: 'auto' or an unknown impl (one line).
  """
  if conv_impl == 'auto':
    raise ValueError(
      "model.conv_impl='auto' reached a network: resolve it where the network is built "
      '(spec.resolve_conv_impl, as models.generator_from_config does).'
    )
  spec.check('conv_impl', conv_impl, spec.RESOLVED_CONV_IMPLS)
  return IMPL_FORMS[conv_impl][jnp.dtype(dtype).name]


def conv_form(
  forms: Forms, dtype: jax.typing.DTypeLike, kernel_size: int, stride: int
) -> Callable[[jax.Array, jax.Array], jax.Array] | None:
  """The exact fast form a VALID (N, Hp, Wp, Cin) × HWIO convolution runs as, or None.

  - float32 3×3 stride 1, with `forms.winograd`: `winograd_conv3x3`.
  - Any other conv, with `forms.matmul_convs`: in float32 `im2col_conv` (one product per
    pass); in bfloat16 the per-tap projections of `matmul_conv` / `stride2_conv`, whose
    row-major products XLA:CPU sends to the matrix units, except the 7×7 stem's: on 3
    channels its 49 taps are cheaper gathered (`im2col_conv`).

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
