"""Exact, CPU-friendly reformulations of the generator's slow convolutions.

XLA on CPU runs ordinary convolutions and matmuls well, but some layers of the ResNet
generator compile poorly there (docs/cpu_conv_forms.md). Each form here computes exactly
what the plain layer does, up to float rounding, from the parameters in the same layout,
so weight import and checkpoints are unaffected. One module per technique:

- `subpixel`: the stride-2 transposed conv as a 2×2 conv to 4·Cout plus depth-to-space.
- `shifted_matmul`: per-tap projections plus shifted adds (`shifted_matmul_conv`, the
  head; `matmul_conv`, bfloat16 stride-1 convs), with custom backwards.
- `im2col`: one matmul over gathered windows (float32 convs Winograd does not take).
- `space_to_depth`: a stride-2 conv as a stride-1 `matmul_conv` (bfloat16).
- `winograd`: float32 3×3 stride-1 convs, F(2×2, 3×3) or F(4×4, 3×3).
- `forms`: which of them a network uses (`Forms`, from its resolved `conv_impl`:
  `forms_for`) and the form of each conv (`conv_form`).
"""

from cyclegan_jax.nets.cpu_forms.forms import ALL
from cyclegan_jax.nets.cpu_forms.forms import IMPL_FORMS
from cyclegan_jax.nets.cpu_forms.forms import PLAIN
from cyclegan_jax.nets.cpu_forms.forms import Forms
from cyclegan_jax.nets.cpu_forms.forms import conv_form
from cyclegan_jax.nets.cpu_forms.forms import forms_for
from cyclegan_jax.nets.cpu_forms.im2col import im2col_conv
from cyclegan_jax.nets.cpu_forms.shifted_matmul import matmul_conv
from cyclegan_jax.nets.cpu_forms.shifted_matmul import shifted_matmul_conv
from cyclegan_jax.nets.cpu_forms.space_to_depth import space_to_depth
from cyclegan_jax.nets.cpu_forms.space_to_depth import space_to_depth_kernel
from cyclegan_jax.nets.cpu_forms.space_to_depth import stride2_conv
from cyclegan_jax.nets.cpu_forms.subpixel import subpixel_conv_transpose
from cyclegan_jax.nets.cpu_forms.subpixel import subpixel_kernel
from cyclegan_jax.nets.cpu_forms.winograd import F2X2
from cyclegan_jax.nets.cpu_forms.winograd import F4X4
from cyclegan_jax.nets.cpu_forms.winograd import F4X4_MIN_OUTPUT
from cyclegan_jax.nets.cpu_forms.winograd import WINOGRAD_TILES
from cyclegan_jax.nets.cpu_forms.winograd import WinogradTile
from cyclegan_jax.nets.cpu_forms.winograd import winograd_conv3x3
from cyclegan_jax.nets.cpu_forms.winograd import winograd_tile_for

__all__ = [
  'ALL',
  'F2X2',
  'F4X4',
  'F4X4_MIN_OUTPUT',
  'Forms',
  'IMPL_FORMS',
  'PLAIN',
  'WINOGRAD_TILES',
  'WinogradTile',
  'conv_form',
  'forms_for',
  'im2col_conv',
  'matmul_conv',
  'shifted_matmul_conv',
  'space_to_depth',
  'space_to_depth_kernel',
  'stride2_conv',
  'subpixel_conv_transpose',
  'subpixel_kernel',
  'winograd_conv3x3',
  'winograd_tile_for',
]
