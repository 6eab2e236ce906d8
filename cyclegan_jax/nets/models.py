"""Flax Linen networks of the official CycleGAN code (junyanz/pytorch-CycleGAN-and-pix2pix).

`ResnetGenerator` is the reference's `resnet_{6,9}blocks` generator (built from its
stages in `spec.generator_stages`) and `PatchDiscriminator` its `basic` / `n_layers`
PatchGAN critic, layer for layer: same padding, same InstanceNorm (no affine parameters,
eps `spec.NORM_EPS`, biased variance), biases on every convolution and N(0, 0.02) weight
init; with `norm='batch'` the critic is pix2pix's (`norms.BatchNorm`). `PixelDiscriminator`
is the reference's PixelGAN; the U-Net generators are in `unet`. Images are NHWC floats
in [-1, 1].
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
from flax.linen.dtypes import promote_dtype
import jax
import jax.numpy as jnp

from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.nets import cpu_forms
from cyclegan_jax.nets import norms
from cyclegan_jax.nets import spec
from cyclegan_jax.nets import unet

Dtype = Any
PyTree = Any

# The reference's `init_weights(init_type='normal', init_gain=0.02)`.
conv_init = nn.initializers.normal(stddev=0.02)


def resolve_dtype(dtype: str | Dtype) -> Dtype:
  """Maps a config string ('float32' | 'bfloat16') to a jnp dtype."""
  if isinstance(dtype, str):
    try:
      return {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[dtype]
    except KeyError:
      raise ValueError(
        f"model.dtype must be 'float32' or 'bfloat16', got {dtype!r}."
      ) from None
  return dtype


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
  """PyTorch's ReflectionPad2d on the spatial axes of an NHWC batch."""
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')


# Shared with the U-Net and the batch-norm critics (`norms`).
instance_norm = norms.instance_norm


def conv(
  features: int,
  kernel: int,
  stride: int = 1,
  padding: int = 0,
  dtype: Dtype = jnp.float32,
  name: str | None = None,
  kernel_init: Any = conv_init,
  use_bias: bool = True,
) -> nn.Conv:
  """A Conv2d (biased by default) with PyTorch's symmetric zero padding and the
  reference's init."""
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(stride, stride),
    padding=((padding, padding), (padding, padding)),
    use_bias=use_bias,
    kernel_init=kernel_init,
    bias_init=nn.initializers.zeros,
    dtype=dtype,
    name=name,
  )


class ConvParams(nn.Module):
  """Declares a conv's `kernel` and `bias` exactly as `nn.Conv`/`nn.ConvTranspose` would.

  Lets a layer compute with a rewrite (see `cpu_forms`) while its parameters keep the
  names, shapes, dtype and initial values of the plain Flax layer: the same module path
  and parameter name draw the same init RNG.

  Attributes:
    kernel_shape: the kernel's shape in the plain layer's layout.
    features: output channels (the bias's length).
    use_bias: declare the bias (else it is returned as None).
  """

  kernel_shape: tuple[int, ...]
  features: int
  kernel_init: Any = conv_init
  use_bias: bool = True

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array | None]:
    kernel = self.param('kernel', self.kernel_init, self.kernel_shape, jnp.float32)
    if not self.use_bias:
      return kernel, None
    bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    return kernel, bias


def conv_layer(
  x: jax.Array,
  features: int,
  kernel: int,
  *,
  stride: int = 1,
  padding: int = 0,
  dtype: Dtype = jnp.float32,
  forms: cpu_forms.Forms = cpu_forms.PLAIN,
  name: str,
  kernel_init: Any = conv_init,
  use_bias: bool = True,
) -> jax.Array:
  """Applies a Conv2d (PyTorch's zero padding) whose parameters are `nn.Conv`'s.

  Must be called inside a compact method: the parameters are created under `name` in
  the calling module, exactly where `nn.Conv(name=name)` puts them, in either form.

  Args:
    x: (N, H, W, Cin) input.
    features: output channels.
    kernel: the square kernel's size.
    stride: 1 or 2.
    padding: symmetric zero padding.
    dtype: compute dtype.
    forms: the rewrites in use (`cpu_forms.conv_form` picks this conv's): with
      `winograd`, a float32 3×3 stride-1 conv runs by Winograd (F(2×2, 3×3), or
      F(4×4, 3×3) from 40×40 outputs); with `matmul_convs`, any other as row-major
      matmuls.
    name: the parameters' scope.
    kernel_init: the kernel's initialiser.
    use_bias: whether the conv has a bias (the reference drops it before a batch norm).

  Returns:
    The output in the compute dtype.
  """
  op = cpu_forms.conv_form(forms, dtype, kernel, stride)
  if op is None:
    return conv(features, kernel, stride, padding, dtype, name, kernel_init, use_bias)(x)
  weights, bias = ConvParams(
    (kernel, kernel, x.shape[-1], features), features, kernel_init, use_bias, name=name
  )()
  if padding:
    x = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  y = op(x, weights)
  return y if bias is None else y + bias.astype(dtype)


class ConvTransposeUp(nn.Module):
  """`ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)`: H×W → 2H×2W.

  PyTorch's transposed conv is the gradient of a conv: dilate the input by the stride,
  pad it by k-1-p = 1 before and k-1-p+output_padding = 2 after, and correlate with the
  spatially flipped kernel with in/out swapped. `transpose_kernel=True` does the flip and
  swap, so the kernel is stored (3, 3, out, in) — the torch IOHW weight transposed to
  HWOI — and the padding is given on the dilated input.

  Attributes:
    features: output channels.
    dtype: compute dtype.
    forms: with `subpixel`, compute it as a sub-pixel conv
      (`cpu_forms.subpixel_conv_transpose`), whose gradient XLA differentiates much
      faster; same parameters, same result.
  """

  features: int
  dtype: Dtype = jnp.float32
  forms: cpu_forms.Forms = cpu_forms.PLAIN

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.forms.subpixel:
      kernel, bias = ConvParams(
        (3, 3, self.features, x.shape[-1]), self.features, name='conv'
      )()
      x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
      return cpu_forms.subpixel_conv_transpose(
        x, kernel, bias, conv=cpu_forms.conv_form(self.forms, self.dtype, 2, 1)
      )
    return nn.ConvTranspose(
      self.features,
      (3, 3),
      strides=(2, 2),
      padding=((1, 2), (1, 2)),
      transpose_kernel=True,
      use_bias=True,
      kernel_init=conv_init,
      bias_init=nn.initializers.zeros,
      dtype=self.dtype,
      name='conv',
    )(x)


# He et al. 2015's init for leaky ReLU (slope 0.2): keeps an unnormalised critic's scale.
PLAIN_CRITIC_INIT = nn.initializers.variance_scaling(
  2.0 / (1.0 + 0.2**2), 'fan_in', 'normal'
)
CURVE_FEATURES = 32  # Hidden units of the 'curve' head's per-pixel colour map.


def residual_base(x: jax.Array, output_channels: int) -> jax.Array:
  """The curve head's starting point: the input in `output_channels`, float32.

  Gray → colour repeats the channel; colour → gray takes the luma (`channels`).
  """
  x = x.astype(jnp.float32)
  if x.shape[-1] != output_channels:
    x = channels_lib.to_channels(x, output_channels)
  return x


def residual_output(change: jax.Array, base: jax.Array) -> jax.Array:
  """The curve head's image: the input plus the predicted change, clipped to [-1, 1].

  Added in image space rather than through tanh(atanh(x) + change): there a saturated
  pixel (a flat white background) gets almost no gradient, so it cannot change.
  """
  return jnp.clip(base + change, -1.0, 1.0)


def finish_head(
  head: str, raw: jax.Array, image: jax.Array, tint: jax.Array | None
) -> jax.Array:
  """The generator's output from its last conv's `raw` output, the input `image` and
  `PixelCurve(image)` (`tint`, None for the 'tanh' head), all at the image's size."""
  if head == 'curve':
    return residual_output(raw, residual_base(image, raw.shape[-1]) + tint)
  if head == 'colour_skip':
    return jnp.tanh(raw + tint)
  return jnp.tanh(raw)


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour upsampling of an NHWC batch: each pixel becomes a factor² block."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def blur_downsample(x: jax.Array) -> jax.Array:
  """BlurPool (Zhang 2019): the binomial [1, 2, 1]⊗[1, 2, 1] / 16 blur, then stride 2.

  Reflect-padded by 1, so an H×W input gives ceil(H/2)×ceil(W/2), as a stride-2 3×3
  conv with padding 1 does. Computed separably, in the input's dtype.
  """
  x = reflect_pad(x, 1)
  x = (x[:, :-2] + 2 * x[:, 1:-1] + x[:, 2:]) / 4
  x = (x[:, :, :-2] + 2 * x[:, :, 1:-1] + x[:, :, 2:]) / 4
  return x[:, ::2, ::2]


class ResizeConvUp(nn.Module):
  """Nearest ×2, reflect-pad 1, 3×3 conv (Odena et al. 2016): H×W → 2H×2W.

  Every output pixel sees the same number of kernel taps, so unlike the transposed conv
  it cannot draw a checkerboard. Parameters: `conv/kernel` (3, 3, in, out), `conv/bias`.
  """

  features: int
  dtype: Dtype = jnp.float32
  forms: cpu_forms.Forms = cpu_forms.PLAIN

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = reflect_pad(upsample_nearest(x), 1)
    return conv_layer(
      x, self.features, 3, dtype=self.dtype, forms=self.forms, name='conv'
    )


def upsample_layer(
  mode: str, features: int, dtype: Dtype, forms: cpu_forms.Forms, name: str
) -> nn.Module:
  """The generator's ×2 upsampling layer for `config.model.upsample`."""
  spec.check('upsample', mode, spec.UPSAMPLE_MODES)
  if mode == 'transpose':
    return ConvTransposeUp(features, dtype=dtype, forms=forms, name=name)
  return ResizeConvUp(features, dtype=dtype, forms=forms, name=name)


class ResnetBlock(nn.Module):
  """[ReflectionPad(1), Conv3×3, IN, ReLU, ReflectionPad(1), Conv3×3, IN] + skip."""

  features: int
  dtype: Dtype = jnp.float32
  forms: cpu_forms.Forms = cpu_forms.PLAIN

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = self._conv('conv_0', reflect_pad(x, 1))
    y = nn.relu(instance_norm(self.dtype, 'norm_0')(y))
    y = self._conv('conv_1', reflect_pad(y, 1))
    y = instance_norm(self.dtype, 'norm_1')(y)
    return x + y

  def _conv(self, name: str, x: jax.Array) -> jax.Array:
    return conv_layer(x, self.features, 3, dtype=self.dtype, forms=self.forms, name=name)


def remat_blocks(
  block: ResnetBlock, block_params: list[PyTree], x: jax.Array
) -> jax.Array:
  """Applies residual blocks in turn, keeping only each block's input for the backward.

  A `lax.scan` over the blocks (their parameters stacked) with a checkpointed body: the
  backward pass recomputes each block from its input. Within one straight-line program
  XLA:CPU merges a recomputation back into the forward pass, but a loop's saved values
  are fixed, so this saves memory on every backend. Same result as applying them one
  after another, to float rounding.

  Args:
    block: an unbound block (the blocks' shared architecture).
    block_params: each block's parameters, in order.
    x: the first block's input.
  """
  stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *block_params)
  body = jax.checkpoint(lambda p, y: block.apply({'params': p}, y))
  return jax.lax.scan(lambda y, p: (body(p, y), None), x, stacked)[0]


def _uniform_symmetric(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
  return jax.random.uniform(key, shape, dtype, minval=-1.0, maxval=1.0)


class PixelCurve(nn.Module):
  """A per-pixel colour map (1×1 conv, ReLU, 1×1 conv), zero at init.

  Sees each pixel's absolute colour, which the generator's instance norms remove, so
  a global grade or tone curve is a function it can represent (as a learned colour
  curve or 3D LUT: Zeng et al. 2020). Its first layer's random biases spread the
  ReLU kinks over [-1, 1].
  """

  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.astype(jnp.float32)
    h = nn.Conv(
      CURVE_FEATURES,
      (1, 1),
      kernel_init=nn.initializers.lecun_normal(),
      bias_init=_uniform_symmetric,
      name='hidden',
    )(x)
    h = nn.relu(h)
    return nn.Conv(self.features, (1, 1), kernel_init=nn.initializers.zeros, name='out')(
      h
    )


class ResnetGenerator(nn.Module):
  """The reference's ResnetGenerator (`resnet_9blocks` / `resnet_6blocks`).

  Built from `spec.generator_stages`, as the tiled translation and the ONNX export are.
  Fully convolutional: any H×W goes in and the same H×W comes out. The two stride-2
  stages need multiples of 4, so other sizes are reflect-padded up to one and the output
  is cropped back (the reference instead silently returns a larger image).

  Attributes:
    ngf: filters of the first conv layer.
    num_blocks: residual blocks at the bottleneck (9 or 6 in the reference).
    output_channels: channels of the output image.
    dtype: compute dtype; parameters stay float32 and the output is float32.
    conv_impl: how the convolutions are computed, one of `spec.RESOLVED_CONV_IMPLS`
      (`generator_from_config` resolves `config.model.conv_impl`, 'auto' included):
      'xla' (default) the plain Flax layers; 'cpu' every exact rewrite of `cpu_forms`
      (same parameters, same result to float rounding): the transposed convs as
      sub-pixel convs, the last 7×7 conv as a projection plus shifted adds, the
      residual blocks' 3×3 convs by Winograd (F(2×2, 3×3), or F(4×4, 3×3) from 40×40
      outputs) in float32, and the other convs as row-major matmuls; 'gpu' the
      sub-pixel convs and the float32 head (`cpu_forms.IMPL_FORMS`).
    upsample: 'transpose' (the paper's), 'resize_conv' or 'blur' (CUT's:
      `blur_upsample`, then a zero-padded 3×3 conv) (`spec.UPSAMPLE_MODES`).
    downsample: 'stride' (the paper's stride-2 convs) or 'blur': each becomes a
      stride-1 conv, norm, ReLU, then `blur_downsample` (same parameters).
    remat: recompute each residual block's activations in the backward pass instead
      of keeping them (`remat_blocks`): less memory for some more compute; the same
      parameters (names included) and the same result.
    head: 'tanh' (the paper's: tanh of the last conv) or 'curve': the last conv
      predicts a change to the input plus `PixelCurve` of the input,
      clip(x + curve(x) + conv, -1, 1) (`residual_output`); both start at zero, so the
      generator starts as the identity and keeps the input's detail unless the losses
      ask for a change (global residual learning, Kim et al. 2016; zero-initialised
      residual branch, Goyal et al. 2017). 'colour_skip': tanh(conv + curve(x)), the
      paper's head plus `PixelCurve` of the input: it starts as the paper's generator
      (the curve is zero at init) but sees the absolute colours its instance norms
      remove, without the identity shortcut that holds the curve head at the input
      when the content must change.
  """

  ngf: int = 64
  num_blocks: int = 9
  output_channels: int = 3
  dtype: Dtype = jnp.float32
  conv_impl: str = 'xla'
  upsample: str = 'transpose'
  downsample: str = 'stride'
  remat: bool = False
  head: str = 'tanh'

  def stages(self) -> tuple[spec.Stage, ...]:
    """This generator's stages (`spec.generator_stages`)."""
    return spec.generator_stages(
      self.ngf,
      self.num_blocks,
      self.output_channels,
      upsample=self.upsample,
      downsample=self.downsample,
      head=self.head,
    )

  @nn.compact
  def __call__(self, x: jax.Array, layers: Sequence[int] = ()) -> Any:
    """The translated batch; with `layers`, instead the features at those indices of
    the official generator's `model` (`spec.torch_layers`), float32, in the given
    order, computing only as far as the last one needs (CUT's `encode_only`)."""
    dtype = resolve_dtype(self.dtype)
    forms = cpu_forms.forms_for(self.conv_impl, dtype)
    stages = self.stages()
    taps = _taps(stages, layers)
    feats: dict[tuple[int, str], jax.Array] = {}

    def tap(index: int, point: str, value: jax.Array) -> bool:
      """Keeps `value` if it is a requested feature; True once all of them are."""
      if (index, point) in taps:
        feats[(index, point)] = value.astype(jnp.float32)
      return bool(taps) and len(feats) == len(taps)

    def features() -> list[jax.Array]:
      return [feats[taps_in_order] for taps_in_order in _ordered(stages, layers)]

    residual = spec.residual_head(self.head)
    # The curve head adds this to the input; colour_skip adds it before its tanh.
    tint = (
      PixelCurve(self.output_channels, name='curve')(x)
      if spec.head_finish(self.head)
      else None
    )
    height, width = x.shape[1], x.shape[2]
    multiple = 2**spec.SCALES
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
      x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode='reflect')
    y = x.astype(dtype)

    blocks = [stage for stage in stages if stage.keep_input]  # Each block's first conv.
    for index, stage in enumerate(stages):
      name = stage.path[0]
      if stage.keep_input or stage.add_input_of is not None:  # A residual block's.
        if stage is blocks[0]:
          y = self._blocks(y, blocks, dtype, forms, tap if taps else None, index)
          if taps and len(feats) == len(taps):
            return features()
        continue
      if stage.head:
        y = self._head(y, stage, residual, dtype, forms)
        break
      if stage.op == 'blur':
        y = blur_downsample(y)
        if tap(index, 'out', y):
          return features()
        continue
      if stage.op == 'blur_up':
        y = blur_upsample(y)
        if tap(index, 'out', y):
          return features()
        continue
      if stage.op in spec.UPSAMPLING_OPS:
        y = upsample_layer(self.upsample, stage.features, dtype, forms, name)(y)
      elif stage.pad_mode == 'reflect':
        y = reflect_pad(y, stage.pad)
        if tap(index, 'pad', y):
          return features()
        y = conv_layer(
          y,
          stage.features,
          stage.kernel,
          stride=stage.stride,
          dtype=dtype,
          forms=forms,
          name=name,
        )
      else:
        y = conv_layer(
          y,
          stage.features,
          stage.kernel,
          stride=stage.stride,
          padding=stage.pad,
          dtype=dtype,
          forms=forms,
          name=name,
        )
      if tap(index, 'conv', y):
        return features()
      y = instance_norm(dtype, f'{name}_norm')(y)
      if tap(index, 'norm', y):
        return features()
      y = activation(y, stage.act)
      if tap(index, 'act', y):
        return features()
    y = y.astype(jnp.float32)[:, :height, :width, :]
    return finish_head(self.head, y, x[:, :height, :width], tint)

  def _blocks(
    self,
    y: jax.Array,
    blocks: list[spec.Stage],
    dtype: Dtype,
    forms: cpu_forms.Forms,
    tap: Callable[[int, str, jax.Array], bool] | None = None,
    first: int = 0,
  ) -> jax.Array:
    """The residual blocks (`ResnetBlock`), each named by its stages' scope; `tap`
    (with the blocks' first stage index `first`) sees each block's output and ends the
    loop once it has every feature asked for."""
    features = blocks[0].features
    if tap is not None:  # Features: block by block (remat saves no memory here).
      for i, b in enumerate(blocks):
        y = ResnetBlock(features, dtype=dtype, forms=forms, name=b.path[0])(y)
        if tap(first + 2 * i + 1, 'out', y):
          break
      return y
    if self.remat and not self.is_initializing():
      # The blocks' parameters (created by the plain path at init, same names) are read
      # from this module's variables and run by a checkpointed scan.
      params = self.variables['params']
      block = ResnetBlock(features, dtype=dtype, forms=forms, parent=None)
      return remat_blocks(block, [params[b.path[0]] for b in blocks], y)
    for b in blocks:
      y = ResnetBlock(features, dtype=dtype, forms=forms, name=b.path[0])(y)
    return y

  def _head(
    self,
    y: jax.Array,
    stage: spec.Stage,
    residual: bool,
    dtype: Dtype,
    forms: cpu_forms.Forms,
  ) -> jax.Array:
    """The last conv (zero-initialised for the curve head), before its activation."""
    y = reflect_pad(y, stage.pad)
    init = nn.initializers.zeros if residual else conv_init  # curve: the identity.
    if forms.head:
      kernel, bias = ConvParams(
        (stage.kernel, stage.kernel, y.shape[-1], stage.features),
        stage.features,
        kernel_init=init,
        name=stage.path[0],
      )()
      y, kernel, bias = promote_dtype(y, kernel, bias, dtype=dtype)
      return cpu_forms.shifted_matmul_conv(y, kernel) + bias
    return conv(
      stage.features, stage.kernel, dtype=dtype, name=stage.path[0], kernel_init=init
    )(y)


def _taps(stages: tuple[spec.Stage, ...], layers: Sequence[int]) -> set[tuple[int, str]]:
  """The (stage index, point) of each official layer index in `layers` (one line if
  one is out of range or in the head, whose features the generator does not give)."""
  official = spec.torch_layers(stages)
  head = next(i for i, stage in enumerate(stages) if stage.head)
  usable = sum(1 for index, _ in official if index < head)
  for layer in layers:
    if not 0 <= layer < usable:
      raise ValueError(
        f'Feature layer {layer} is not one of the generator layers 0..{usable - 1} '
        "before its head (the official model's indices): fix cut.nce_layers."
      )
  return {official[layer] for layer in layers}


def _ordered(
  stages: tuple[spec.Stage, ...], layers: Sequence[int]
) -> list[tuple[int, str]]:
  official = spec.torch_layers(stages)
  return [official[layer] for layer in layers]


def blur_upsample(x: jax.Array) -> jax.Array:
  """CUT's antialiased ×2 `Upsample`: replicate-pad 1, the [1, 3, 3, 1]⊗[1, 3, 3, 1]
  filter transposed at stride 2 (×4 so a constant stays constant).

  Each output pixel is 3/4 of its nearest input pixel plus 1/4 of the next nearest
  (bilinear ×2 with half-pixel centres, clamped at the border). Computed separably, in
  the input's dtype.
  """
  n, h, w, c = x.shape
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='edge')
  even = 0.25 * x[:, :-2] + 0.75 * x[:, 1:-1]
  odd = 0.75 * x[:, 1:-1] + 0.25 * x[:, 2:]
  x = jnp.stack([even, odd], axis=2).reshape(n, 2 * h, w + 2, c)
  even = 0.25 * x[:, :, :-2] + 0.75 * x[:, :, 1:-1]
  odd = 0.75 * x[:, :, 1:-1] + 0.25 * x[:, :, 2:]
  return jnp.stack([even, odd], axis=3).reshape(n, 2 * h, 2 * w, c)


def activation(x: jax.Array, act: str) -> jax.Array:
  """A stage's activation (`spec.Stage.act`): 'relu', 'tanh' or 'none'."""
  if act == 'relu':
    return nn.relu(x)
  if act == 'tanh':
    return jnp.tanh(x)
  return x


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.sum(jnp.square(x)) + eps)


def spectral_power_iteration(
  kernel: jax.Array, u: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """One power iteration (Miyato et al. 2018) on a conv kernel as a (fan_in, out) matrix.

  Args:
    kernel: an HWIO conv kernel.
    u: the previous estimate of the top right-singular vector, (out,).

  Returns:
    (the next estimate of u, σ): σ estimates the top singular value and carries the
    gradient to `kernel` (the vectors do not, as in the paper).
  """
  w = kernel.reshape(-1, kernel.shape[-1]).astype(jnp.float32)
  v = jax.lax.stop_gradient(_l2_normalize(w @ jax.lax.stop_gradient(u)))
  wv = v @ w
  sigma = jnp.sqrt(jnp.sum(jnp.square(wv)) + 1e-12)
  return jax.lax.stop_gradient(wv / sigma), sigma


class SpectralNormConv(nn.Module):
  """A biased Conv2d (PyTorch's zero padding) whose kernel is divided by its spectral
  norm, estimated from the `u` vector in the 'batch_stats' collection.

  Its `kernel` and `bias` are `nn.Conv`'s (names, shapes, initial values). `u` is read,
  never written here: the train step advances it with `spectral_stats_update` once per
  step, so every use of a critic within a step divides by the same σ.
  """

  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.kernel_size
    kernel = self.param('kernel', conv_init, (k, k, x.shape[-1], self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    u = self.variable(
      'batch_stats',
      'u',
      lambda: _l2_normalize(jax.random.normal(self.make_rng('params'), (self.features,))),
    )
    _, sigma = spectral_power_iteration(kernel, u.value)
    x, kernel, bias = promote_dtype(x, kernel / sigma, bias, dtype=self.dtype)
    y = jax.lax.conv_general_dilated(
      x,
      kernel,
      (self.stride, self.stride),
      ((self.padding, self.padding), (self.padding, self.padding)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
    )
    return y + bias


def spectral_stats_update(params: Any, stats: Any) -> Any:
  """One critic's 'batch_stats' after one power iteration of each of its convs."""
  return {
    layer: {'u': spectral_power_iteration(params[layer]['kernel'], s['u'])[0]}
    for layer, s in stats.items()
  }


class PatchDiscriminator(nn.Module):
  """The reference's NLayerDiscriminator (`basic` = 70×70 PatchGAN at num_layers=3).

  Attributes:
    ndf: filters of the first conv layer.
    num_layers: stride-2 stages (the reference's n_layers_D).
    dtype: compute dtype; parameters stay float32 and the logits are float32.
    conv_impl: one of `spec.RESOLVED_CONV_IMPLS`; 'cpu' computes the convolutions as
      row-major matmuls (`cpu_forms.Forms.matmul_convs`; same parameters, same result
      to float rounding); 'xla' (default) and 'gpu' as plain XLA convs.
    spectral_norm: every conv's kernel divided by its spectral norm
      (`SpectralNormConv`; the `u` vectors in 'batch_stats'); the InstanceNorms stay,
      as in most spectrally normalised PatchGANs. The parameters keep their names.
    norm: 'instance' (the paper's), 'none' or 'batch'. Instance norm hides each
      image's mean colour and contrast from the layers after the first, so a critic
      without it can tell a global grade or tone apart (same parameters). Without
      the norms nothing restores the activations' scale, so the kernels start from
      He's init for leaky ReLU (`PLAIN_CRITIC_INIT`) instead of N(0, 0.02), which
      would leave the logits near constant. 'batch' is pix2pix's default: a PyTorch
      BatchNorm2d (`norms.BatchNorm`, running statistics in 'batch_stats') after
      each inner conv, which then has no bias (the first and last convs keep theirs).
    axis_name: with 'batch', batch statistics over this mapped axis (`norms`).
    downsample: 'stride' (the paper's stride-2 convs) or 'blur' (CUT's default): each
      becomes a stride-1 conv, its norm and LeakyReLU, then `blur_downsample`; same
      parameters.
  """

  ndf: int = 64
  num_layers: int = 3
  dtype: Dtype = jnp.float32
  conv_impl: str = 'xla'
  spectral_norm: bool = False
  norm: str = 'instance'
  axis_name: str | None = None
  downsample: str = 'stride'

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool = True) -> jax.Array:
    """The logits of an NHWC batch; `use_running_average` as in `norms.BatchNorm`
    (only a 'batch' critic reads it)."""
    dtype = resolve_dtype(self.dtype)
    forms = cpu_forms.forms_for(self.conv_impl, dtype)
    spec.check('norm_D', self.norm, spec.NORM_D_MODES)
    batch = self.norm == 'batch'
    if batch and self.spectral_norm:
      raise ValueError(
        "model.spectral_norm_D does not combine with norm_D='batch'; "
        "use norm_D='instance' or 'none' with it."
      )

    init = PLAIN_CRITIC_INIT if self.norm == 'none' else conv_init

    def conv4(
      y: jax.Array, features: int, stride: int, name: str, use_bias: bool = True
    ) -> jax.Array:
      if self.spectral_norm:
        return SpectralNormConv(features, 4, stride, 1, dtype, name=name)(y)
      return conv_layer(
        y,
        features,
        4,
        stride=stride,
        padding=1,
        dtype=dtype,
        forms=forms,
        name=name,
        kernel_init=init,
        use_bias=use_bias,
      )

    blur = spec.check('downsample_D', self.downsample, spec.DOWNSAMPLE_D_MODES) == 'blur'
    y = nn.leaky_relu(conv4(x.astype(dtype), self.ndf, 1 if blur else 2, 'conv_0'), 0.2)
    if blur:
      y = blur_downsample(y)
    for n in range(1, self.num_layers + 1):
      down = n < self.num_layers
      stride = 2 if down and not blur else 1
      y = conv4(y, self.ndf * min(2**n, 8), stride, f'conv_{n}', use_bias=not batch)
      y = critic_norm(
        y, self.norm, dtype, self.axis_name, f'norm_{n}', use_running_average
      )
      y = nn.leaky_relu(y, 0.2)
      if down and blur:
        y = blur_downsample(y)
    y = conv4(y, 1, 1, f'conv_{self.num_layers + 1}')
    return y.astype(jnp.float32)


def critic_norm(
  y: jax.Array,
  norm: str,
  dtype: Dtype,
  axis_name: str | None,
  name: str,
  use_running_average: bool,
) -> jax.Array:
  """A critic's norm after an inner conv: 'instance', 'batch' or none ('none')."""
  if norm == 'instance':
    return instance_norm(dtype, name)(y)
  if norm == 'batch':
    bn = norms.BatchNorm(dtype=dtype, axis_name=axis_name, name=name)
    return bn(y, use_running_average)
  return y


class PixelDiscriminator(nn.Module):
  """The reference's PixelDiscriminator (`pixel`, PixelGAN): one logit per pixel.

  [Conv1×1(ndf), LeakyReLU 0.2, Conv1×1(2·ndf), norm, LeakyReLU 0.2, Conv1×1(1)].
  With 'batch' the two later convs have no bias, as in the reference (whose last conv
  also drops it); with 'instance' or 'none' every conv has one. Parameters `conv_0`,
  `conv_1`, `norm_1` ('batch'), `conv_2`.

  Attributes:
    ndf: filters of the first conv.
    norm: one of `spec.NORM_D_MODES` ('none': He init, as `PatchDiscriminator`).
    dtype: compute dtype; parameters stay float32 and the logits are float32.
    axis_name: with 'batch', batch statistics over this mapped axis (`norms`).
  """

  ndf: int = 64
  norm: str = 'batch'
  dtype: Dtype = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool = True) -> jax.Array:
    dtype = resolve_dtype(self.dtype)
    spec.check('norm_D', self.norm, spec.NORM_D_MODES)
    use_bias = self.norm != 'batch'
    init = PLAIN_CRITIC_INIT if self.norm == 'none' else conv_init
    y = conv(self.ndf, 1, dtype=dtype, name='conv_0', kernel_init=init)(x.astype(dtype))
    y = nn.leaky_relu(y, 0.2)
    y = conv(
      2 * self.ndf, 1, dtype=dtype, name='conv_1', kernel_init=init, use_bias=use_bias
    )(y)
    y = critic_norm(y, self.norm, dtype, self.axis_name, 'norm_1', use_running_average)
    y = nn.leaky_relu(y, 0.2)
    y = conv(1, 1, dtype=dtype, name='conv_2', kernel_init=init, use_bias=use_bias)(y)
    return y.astype(jnp.float32)


def conv_impl_from_config(model_config: Any, backend: str | None = None) -> str:
  """`config.model.conv_impl` resolved for `backend` (default: JAX's default backend).

  Configs saved before the field: 'auto'. See `spec.resolve_conv_impl`.
  """
  value = model_config['conv_impl'] if 'conv_impl' in model_config else 'auto'
  return spec.resolve_conv_impl(value, backend or jax.default_backend())


def generator_from_config(
  model_config: Any,
  output_channels: int | None = None,
  backend: str | None = None,
  axis_name: str | None = None,
) -> ResnetGenerator | unet.UnetGenerator:
  """Builds the generator `config.model` names.

  A U-Net name (`spec.UNET_DOWNS`) gives a `unet.UnetGenerator` (ngf, norm,
  use_dropout, dtype; batch statistics over `axis_name`); a ResNet name a
  `ResnetGenerator` (ngf, dtype, layout, remat, conv_impl resolved for `backend`:
  `conv_impl_from_config`), which is instance-norm only and has no dropout.

  `output_channels` defaults to `model.output_nc` (domain B's; 3 when the config has
  none): the A→B generator's.
  """
  if output_channels is None:
    output_channels = channels_lib.domain_channels(model_config)['B']
  norm = spec.check('norm', model_config.get('norm', 'instance'), spec.NORM_G_MODES)
  use_dropout = bool(model_config.get('use_dropout', False))
  dtype = resolve_dtype(model_config.dtype)
  if spec.is_unet(model_config.netG):
    return unet.UnetGenerator(
      num_downs=spec.UNET_DOWNS[model_config.netG],
      ngf=model_config.ngf,
      output_channels=output_channels,
      norm=norm,
      use_dropout=use_dropout,
      dtype=dtype,
      axis_name=axis_name,
      conv_impl=conv_impl_from_config(model_config, backend),
    )
  num_blocks = spec.num_blocks_of(model_config.netG)
  if norm != 'instance' or use_dropout:
    raise ValueError(
      f'netG={model_config.netG!r} is built with instance norm and no dropout only, '
      f'got model.norm={norm!r}, model.use_dropout={use_dropout}; use a U-Net '
      "(unet_256 / unet_128) or model.norm='instance' with model.use_dropout=False."
    )
  return ResnetGenerator(
    ngf=model_config.ngf,
    num_blocks=num_blocks,
    output_channels=output_channels,
    dtype=dtype,
    conv_impl=conv_impl_from_config(model_config, backend),
    **spec.generator_layout(model_config),
    remat=bool(model_config.get('remat', False)),
  )


def discriminator_from_config(
  model_config: Any, backend: str | None = None, axis_name: str | None = None
) -> PatchDiscriminator | PixelDiscriminator:
  """The critic that `config.model` names (netD, ndf, n_layers_D, dtype, spectral_norm_D,
  norm_D, downsample_D, conv_impl resolved for `backend`); 'pixel' gives a `PixelDiscriminator`.
  A 'batch' critic's statistics are over `axis_name`."""
  spec.check('netD', model_config.netD, spec.NET_D)
  norm = model_config.get('norm_D', 'instance')
  dtype = resolve_dtype(model_config.dtype)
  if model_config.netD == 'pixel':
    if model_config.get('spectral_norm_D', False):
      raise ValueError(
        "model.spectral_norm_D is not available for netD='pixel'; use 'basic' or "
        "'n_layers' with it."
      )
    return PixelDiscriminator(
      ndf=model_config.ndf, norm=norm, dtype=dtype, axis_name=axis_name
    )
  num_layers = 3 if model_config.netD == 'basic' else model_config.n_layers_D
  return PatchDiscriminator(
    ndf=model_config.ndf,
    num_layers=num_layers,
    dtype=dtype,
    conv_impl=conv_impl_from_config(model_config, backend),
    spectral_norm=model_config.spectral_norm_D,
    norm=norm,
    axis_name=axis_name,
    downsample=model_config.get('downsample_D', 'stride'),
  )
