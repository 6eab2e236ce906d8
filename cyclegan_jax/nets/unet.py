"""The reference's U-Net generator (`unet_128` / `unet_256`), pix2pix's default netG.

The official `UnetGenerator` nests `UnetSkipConnectionBlock`s; here the recursion is
unrolled into one loop down and one loop up, block 0 being the outermost:

* outermost: down [conv], up [ReLU, convT(2·ngf → output, biased), tanh];
* innermost (block num_downs-1): down [LeakyReLU 0.2, conv], up [ReLU, convT, norm];
* the others: down [LeakyReLU 0.2, conv, norm], up [ReLU, convT, norm], then
  Dropout(0.5) in the num_downs-5 ngf·8 blocks next to the innermost (use_dropout);
  each non-outermost block returns concat(skip, up) on channels.

Every conv is 4×4, stride 2, padding 1. With batch norm only the outermost up conv has
a bias (the reference's `use_bias = norm is InstanceNorm` for all the others). The reference's LeakyReLU runs in place
on the block's input before `torch.cat([x, model(x)])` reads it, so its skip carries
LeakyReLU(x), not x; reproduced here so that converted weights give its outputs.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
from flax.linen.dtypes import promote_dtype
import jax
import jax.numpy as jnp

from cyclegan_jax.nets import cpu_forms
from cyclegan_jax.nets import norms
from cyclegan_jax.nets import spec

Dtype = Any

# The reference's `init_weights(init_type='normal', init_gain=0.02)`.
_conv_init = nn.initializers.normal(stddev=0.02)

# Dropout probability of the reference's `nn.Dropout(0.5)`.
DROPOUT_RATE = 0.5


def dropout_blocks(num_downs: int) -> range:
  """The blocks (0 = outermost) whose up path ends with Dropout when use_dropout."""
  return range(4, num_downs - 1)


def block_channels(num_downs: int, ngf: int, input_nc: int, output_nc: int):
  """[(outer_in, inner, outer_out)] per block, 0 = outermost: the down conv maps
  outer_in → inner channels, the up conv maps back to outer_out."""
  inner = [ngf * min(2**i, 8) for i in range(num_downs)]
  return [
    (
      input_nc if i == 0 else inner[i - 1],
      inner[i],
      output_nc if i == 0 else inner[i - 1],
    )
    for i in range(num_downs)
  ]


class UnetGenerator(nn.Module):
  """The reference's UnetGenerator: num_downs ×2 downsamplings with skips.

  Inputs must have height and width divisible by 2**num_downs (the 1×1 bottleneck).

  Attributes:
    num_downs: 7 for `unet_128`, 8 for `unet_256` (`spec.UNET_DOWNS`); at least 5.
    ngf: filters of the outermost conv.
    output_channels: channels of the output image.
    norm: 'batch' (the reference's pix2pix default) or 'instance' (no affine
      parameters, no running statistics).
    use_dropout: Dropout(0.5) in the inner decoder blocks (`dropout_blocks`), drawn
      from the 'dropout' RNG stream when `deterministic=False`.
    dtype: compute dtype; parameters and statistics stay float32, the output is float32.
    axis_name: batch statistics over this mapped axis (global batch); see `norms`.
    conv_impl: one of `spec.RESOLVED_CONV_IMPLS`; 'cpu' and 'gpu' compute the
      transposed convs as sub-pixel convs (`cpu_forms.subpixel_conv_transpose`, whose
      gradient XLA:CPU runs much faster), 'cpu' the convs as matmuls too; same
      parameters, same result to float rounding.
  """

  num_downs: int
  ngf: int = 64
  output_channels: int = 3
  norm: str = 'batch'
  use_dropout: bool = False
  dtype: Dtype = jnp.float32
  axis_name: str | None = None
  conv_impl: str = 'xla'

  @nn.compact
  def __call__(
    self,
    x: jax.Array,
    use_running_average: bool = True,
    deterministic: bool = True,
  ) -> jax.Array:
    """Translates an NHWC batch in [-1, 1].

    Args:
      x: (N, H, W, C) images, H and W divisible by 2**num_downs.
      use_running_average: batch norm with the running statistics (the reference's
        `eval()`); False: with this batch's, updating the running ones when
        'batch_stats' is mutable.
      deterministic: no dropout (the reference's `eval()`); False needs a 'dropout'
        RNG.
    """
    n = self.num_downs
    spec.check('norm', self.norm, spec.NORM_G_MODES)
    if n < 5:
      raise ValueError(f'UnetGenerator needs num_downs >= 5, got {n}.')
    multiple = 2**n
    if x.shape[1] % multiple or x.shape[2] % multiple:
      raise ValueError(
        f'a U-Net with {n} downsamplings needs height and width divisible by '
        f'{multiple}, got {x.shape[1]}x{x.shape[2]}; pad the images to a multiple.'
      )
    channels = block_channels(n, self.ngf, x.shape[-1], self.output_channels)
    biased = self.norm == 'instance'
    dropout = set(dropout_blocks(n)) if self.use_dropout else set()

    y = x.astype(self._dtype())
    skips = []
    for i, (_, inner, _) in enumerate(channels):
      if i > 0:
        y = nn.leaky_relu(y, 0.2)
        skips.append(y)  # The in-place LeakyReLU's output (see the module doc).
      y = self._conv(inner, biased, f'down_{i}')(y)
      if 0 < i < n - 1:
        y = self._norm(y, f'down_{i}_norm', use_running_average)
    for i in reversed(range(n)):
      outer_out = channels[i][2]
      y = nn.relu(y)
      y = self._conv_transpose(outer_out, biased or i == 0, f'up_{i}')(y)
      if i == 0:
        return jnp.tanh(y.astype(jnp.float32))
      y = self._norm(y, f'up_{i}_norm', use_running_average)
      if i in dropout:
        y = nn.Dropout(DROPOUT_RATE, name=f'up_{i}_dropout')(
          y, deterministic=deterministic
        )
      y = jnp.concatenate([skips[i - 1], y], axis=-1)
    raise AssertionError('unreachable')

  def _forms(self) -> cpu_forms.Forms:
    return cpu_forms.forms_for(self.conv_impl, self._dtype())

  def _conv(self, features: int, use_bias: bool, name: str) -> Callable:
    from cyclegan_jax.nets import models  # pylint: disable=g-import-not-at-top  # Cycle.

    return lambda y: models.conv_layer(
      y,
      features,
      4,
      stride=2,
      padding=1,
      dtype=self._dtype(),
      forms=self._forms(),
      name=name,
      kernel_init=_conv_init,
      use_bias=use_bias,
    )

  def _conv_transpose(self, features: int, use_bias: bool, name: str) -> Callable:
    # ConvTranspose2d(k=4, stride=2, padding=1): pad the dilated input by k-1-p = 2;
    # the kernel is stored (4, 4, out, in), the torch IOHW weight transposed to HWOI.
    dtype, forms = self._dtype(), self._forms()
    if not forms.subpixel:
      return nn.ConvTranspose(
        features,
        (4, 4),
        strides=(2, 2),
        padding=((2, 2), (2, 2)),
        transpose_kernel=True,
        use_bias=use_bias,
        kernel_init=_conv_init,
        bias_init=nn.initializers.zeros,
        dtype=dtype,
        name=name,
      )
    from cyclegan_jax.nets import models  # pylint: disable=g-import-not-at-top  # Cycle.

    def up(y: jax.Array) -> jax.Array:
      params = models.ConvParams(
        (4, 4, features, y.shape[-1]), features, _conv_init, use_bias, name=name
      )
      kernel, bias = params()
      y, kernel, bias = promote_dtype(y, kernel, bias, dtype=dtype)
      conv = cpu_forms.conv_form(forms, dtype, 3, 1)
      return cpu_forms.subpixel_conv_transpose(y, kernel, bias, conv=conv)

    return up

  def _norm(self, y: jax.Array, name: str, use_running_average: bool) -> jax.Array:
    if self.norm == 'batch':
      bn = norms.BatchNorm(dtype=self._dtype(), axis_name=self.axis_name, name=name)
      return bn(y, use_running_average)
    return norms.instance_norm(self._dtype(), name)(y)

  def _dtype(self) -> Any:
    return jnp.dtype(self.dtype)  # Also a config string ('bfloat16').
