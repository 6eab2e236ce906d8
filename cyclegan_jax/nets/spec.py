"""The networks described once, as data: names, modes and the generator's stages.

The Flax generator (`models.ResnetGenerator`), the tiled translation plan
(`deploy.tiling.plan_for`) and the ONNX writer (`deploy.onnx_graph`) all build from
`generator_stages`; the config checks (`cli.config_checks`) read the mode lists here.
Imports no JAX, so that the config checks stay cheap.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

# InstanceNorm2d's epsilon (the reference's default), in every norm of both networks.
NORM_EPS = 1e-5

# The official netG names and their residual block counts.
NET_G_BLOCKS = {'resnet_9blocks': 9, 'resnet_6blocks': 6}
# The official U-Net names and their ×2 downsamplings (so inputs divisible by 2**n).
UNET_DOWNS = {'unet_128': 7, 'unet_256': 8}
NET_G = (*NET_G_BLOCKS, *UNET_DOWNS)
# 'pixel' is the official PixelGAN: 1×1 convs, one logit per pixel.
NET_D = ('basic', 'n_layers', 'pixel')

# The generator's layout fields (`config.model.*`); the first of each is the paper's.
# 'blur' is CUT's default (Park et al. 2020): the fixed [1, 3, 3, 1] ×2 upsampling, then
# a zero-padded 3×3 conv.
UPSAMPLE_MODES = ('transpose', 'resize_conv', 'blur')
DOWNSAMPLE_MODES = ('stride', 'blur')
# 'colour_skip' is the paper's tanh head with the input's absolute colours fed past the
# instance norms; 'curve' starts as the identity and adds its change to the input.
HEAD_MODES = ('tanh', 'curve', 'colour_skip')
LAYOUT_MODES = {
  'upsample': UPSAMPLE_MODES,
  'downsample': DOWNSAMPLE_MODES,
  'head': HEAD_MODES,
}
# The generator's normalisation (`config.model.norm`; the official `--norm`).
NORM_G_MODES = ('instance', 'batch')
# The critic's normalisation (`config.model.norm_D`).
NORM_D_MODES = ('instance', 'none', 'batch')
# BatchNorm2d's running-statistics momentum (the reference's default), as
# running = (1 - m) * running + m * batch, with the unbiased batch variance.
BN_MOMENTUM = 0.1

# How the convolutions are computed (`config.model.conv_impl`), all with the same
# parameters and the same result to float rounding: 'xla' the plain Flax layers; 'cpu'
# every exact rewrite of `nets.cpu_forms`; 'gpu' the subset measured to win on GPUs;
# 'auto' the one for the backend the network is built on (`resolve_conv_impl`).
CONV_IMPLS = ('auto', 'xla', 'cpu', 'gpu')
RESOLVED_CONV_IMPLS = CONV_IMPLS[1:]
_AUTO_CONV_IMPL = {'cpu': 'cpu', 'gpu': 'gpu'}  # Backend -> impl; others: 'xla'.

# The stage ops; the upsampling ones double the resolution. 'blur_up' has no parameters
# (the 'blur' upsample mode's conv is a stage of its own after it).
UPSAMPLING_OPS = ('conv_transpose', 'resize_conv', 'blur_up')
OPS = ('conv', 'blur', *UPSAMPLING_OPS)
# The stage op of each upsample mode.
UP_OPS = {
  'transpose': 'conv_transpose',
  'resize_conv': 'resize_conv',
  'blur': 'blur_up',
}
# The critic's downsampling (`config.model.downsample_D`): 'stride' (the paper's) or
# 'blur' (CUT's default: each stride-2 conv at stride 1, then the blur at stride 2).
DOWNSAMPLE_D_MODES = ('stride', 'blur')
# The parameter-free ops: no kernel, no norm of their own.
PARAMETER_FREE_OPS = ('blur', 'blur_up')


def check(field: str, value: Any, options: tuple[str, ...]) -> str:
  """Returns `value` if it is one of `options`, else raises a one-line ValueError.

  Args:
    field: the config field, without 'model.' (e.g. 'upsample').
    value: its value.
    options: the allowed values.
  """
  if value not in options:
    allowed = ', '.join(repr(o) for o in options)
    raise ValueError(f'model.{field} must be one of {allowed}, got {value!r}.')
  return value


def resolve_conv_impl(conv_impl: str, backend: str) -> str:
  """The conv impl a network built on `backend` ('cpu', 'gpu', 'tpu') computes with.

  'auto' becomes 'cpu' on a CPU, 'gpu' on a GPU and 'xla' elsewhere; any other
  value of `CONV_IMPLS` stays as it is.
  """
  check('conv_impl', conv_impl, CONV_IMPLS)
  if conv_impl == 'auto':
    return _AUTO_CONV_IMPL.get(backend, 'xla')
  return conv_impl


def generator_layout(model_config: Mapping[str, Any]) -> dict[str, str]:
  """{'upsample', 'downsample', 'head'} of `config.model`, each checked (configs saved
  without them: the paper's layout)."""
  return {
    field: check(field, model_config[field] if field in model_config else modes[0], modes)
    for field, modes in LAYOUT_MODES.items()
  }


def is_unet(net_g: str) -> bool:
  """Whether `net_g` names a U-Net (`UNET_DOWNS`) rather than a ResNet generator."""
  return net_g in UNET_DOWNS


def num_blocks_of(net_g: str) -> int:
  """The residual blocks of the official ResNet generator `net_g` (one line if not
  one)."""
  return NET_G_BLOCKS[check('netG', net_g, tuple(NET_G_BLOCKS))]


def net_g_name(num_blocks: int) -> str | None:
  """The netG name of a generator with `num_blocks` residual blocks, or None."""
  return {v: k for k, v in NET_G_BLOCKS.items()}.get(num_blocks)


@dataclasses.dataclass(frozen=True)
class Stage:
  """One conv of the generator and what follows it (or the parameter-free blur).

  Attributes:
    path: where its `kernel` and `bias` are in the parameters ('blur': a name only).
    op: one of `OPS`: 'conv' (HWIO kernel); 'conv_transpose' (the reference's k=3,
      stride-2, padding=1, output_padding=1 upsampling; `nn.ConvTranspose` layout);
      'resize_conv' (nearest ×2, then the 3×3 conv with reflect padding 1 at the
      upsampled resolution); 'blur' (no parameters: the binomial blur at stride 2);
      'blur_up' (no parameters: replicate-pad 1, the [1, 3, 3, 1] filter transposed
      at stride 2, i.e. ×2 bilinear upsampling with clamped borders).
    features: output channels (0 for 'blur': its input's).
    kernel: the square kernel's size.
    stride: the conv's stride (2 for the upsampling ops: the output is twice the input).
    pad: padding on each side, in input pixels ('conv' and 'blur'; the upsampling ops
      pad by 1 at the resolution their conv runs at).
    pad_mode: 'reflect', 'zero' or 'replicate' ('blur_up').
    norm: an InstanceNorm (eps `NORM_EPS`) follows the conv.
    act: 'relu', 'tanh' or 'none', after the norm.
    add_input_of: the index of an earlier stage whose input is added after the norm and
      activation (a residual block's skip), or None.
    keep_input: a later stage adds this stage's input.
    head: the generator's last conv.
  """

  path: tuple[str, ...]
  op: str
  features: int
  kernel: int
  stride: int
  pad: int
  pad_mode: str
  norm: bool
  act: str
  add_input_of: int | None = None
  keep_input: bool = False
  head: bool = False

  def halo(self) -> int:
    """Input pixels read beyond a tile on each side (at the input's resolution)."""
    return self.pad if self.op in ('conv', 'blur') else 1

  def has_params(self) -> bool:
    """Whether the stage has a kernel and bias (at `path`)."""
    return self.op not in PARAMETER_FREE_OPS

  def scale(self) -> float:
    """Output pixels per input pixel along an axis."""
    return 2.0 if self.op in UPSAMPLING_OPS else 1.0 / self.stride


# The generator's stride-2 stages down and up: inputs are padded to multiples of 2**this.
SCALES = 2


def generator_stages(
  ngf: int,
  num_blocks: int,
  output_channels: int,
  *,
  upsample: str = 'transpose',
  downsample: str = 'stride',
  head: str = 'tanh',
) -> tuple[Stage, ...]:
  """The reference's ResnetGenerator with this layout, stage by stage, in order.

  A 7×7 reflect-padded stem, two downsampling convs (stride 2, zero padding 1; or with
  'blur', stride 1 then the blur), `num_blocks` residual blocks of two reflect-padded
  3×3 convs, two ×2 upsampling layers and the 7×7 reflect-padded head. Every stage but
  the head and the blur is followed by an InstanceNorm; the head's activation is tanh
  for the 'tanh' head (the other heads finish outside the stages: `head_finish`).

  Raises:
    ValueError: an unknown mode (one line).
  """
  check('upsample', upsample, UPSAMPLE_MODES)
  check('downsample', downsample, DOWNSAMPLE_MODES)
  check('head', head, HEAD_MODES)
  stages = [Stage(('stem',), 'conv', ngf, 7, 1, 3, 'reflect', True, 'relu')]
  for i in range(SCALES):
    features = ngf * 2 ** (i + 1)
    if downsample == 'blur':  # Zhang 2019's ConvStride → BlurPool ∘ ReLU ∘ Conv.
      stages.append(
        Stage((f'down_{i}',), 'conv', features, 3, 1, 1, 'zero', True, 'relu')
      )
      stages.append(
        Stage((f'down_{i}', 'blur'), 'blur', 0, 3, 2, 1, 'reflect', False, 'none')
      )
    else:
      stages.append(
        Stage((f'down_{i}',), 'conv', features, 3, 2, 1, 'zero', True, 'relu')
      )
  features = ngf * 2**SCALES
  for i in range(num_blocks):
    first = len(stages)
    block = f'block_{i}'
    conv = ('conv', features, 3, 1, 1, 'reflect', True)
    stages.append(Stage((block, 'conv_0'), *conv, 'relu', keep_input=True))
    stages.append(Stage((block, 'conv_1'), *conv, 'none', add_input_of=first))
  up_op = UP_OPS[upsample]
  pad_mode = 'zero' if up_op == 'conv_transpose' else 'reflect'
  for i in range(SCALES):
    features = ngf * 2 ** (SCALES - 1 - i)
    if up_op == 'blur_up':  # CUT's Upsample, then Conv(3, padding=1), norm, ReLU.
      stages.append(
        Stage((f'up_{i}', 'blur'), 'blur_up', 0, 4, 2, 1, 'replicate', False, 'none')
      )
      stages.append(Stage((f'up_{i}',), 'conv', features, 3, 1, 1, 'zero', True, 'relu'))
      continue
    stages.append(
      Stage((f'up_{i}', 'conv'), up_op, features, 3, 2, 0, pad_mode, True, 'relu')
    )
  act = 'tanh' if head == 'tanh' else 'none'
  stages.append(
    Stage(('head',), 'conv', output_channels, 7, 1, 3, 'reflect', False, act, head=True)
  )
  return tuple(stages)


# The official ResnetGenerator's `nn.Sequential` layers of each stage, in order, as
# points of our stage: 'pad' (its reflect-padded input), 'conv', 'norm', 'act', or
# 'out' (a parameter-free stage's output, a residual block's sum).
def _torch_points(stage: Stage) -> tuple[str, ...]:
  if not stage.has_params():
    return ('out',)
  if stage.keep_input:  # A residual block is one layer, at its second conv.
    return ()
  if stage.add_input_of is not None:
    return ('out',)
  points = (
    ('pad', 'conv') if stage.op == 'conv' and stage.pad_mode == 'reflect' else ('conv',)
  )
  return (
    points + (('norm',) if stage.norm else ()) + (('act',) if stage.act != 'none' else ())
  )


def torch_layers(stages: tuple[Stage, ...]) -> tuple[tuple[int, str], ...]:
  """The official generator's `model` layers as (stage index, point), by layer index.

  CUT's `nce_layers` ('0,4,8,12,16') index this list: with the 'blur' layouts, 0 is the
  stem's padded input, 4 and 8 the two downsampling convs' outputs (before their norms),
  12 and 16 the outputs of residual blocks 0 and 4. The layers of a 'resize_conv'
  stage, which the official code does not have, count as a transposed conv's (conv,
  norm, ReLU).
  """
  return tuple(
    (i, point) for i, stage in enumerate(stages) for point in _torch_points(stage)
  )


def residual_head(head: str) -> bool:
  """Whether the head adds the input to the last conv's output ('curve')."""
  return check('head', head, HEAD_MODES) == 'curve'


def head_finish(head: str) -> bool:
  """Whether the head's output is finished past the last conv, with a `PixelCurve` of
  the input ('curve', 'colour_skip'): its stage then has no activation."""
  return check('head', head, HEAD_MODES) != 'tanh'
