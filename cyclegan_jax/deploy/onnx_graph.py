"""The ResnetGenerator as an ONNX graph, written from its Flax parameters.

The graph walks the generator's stages (`spec.generator_stages`, which the Flax module
is built from too). Each layer of the reference's generator is one standard ONNX op (ReflectionPad2d →
Pad(reflect), Conv2d → Conv, InstanceNorm2d → InstanceNormalization, ConvTranspose2d →
ConvTranspose with output_padding), with this project's input handling around them:
NHWC in and out, and any height and width reflect-padded up to a multiple of 4 and
cropped back, as `models.ResnetGenerator` does. Batch, height and width are dynamic.
The optional layouts map the same way: resize_conv → Resize(nearest) + Pad + Conv,
blur downsampling → Conv + a depthwise (grouped) Conv of the fixed binomial filter at
stride 2, blur upsampling → Pad(edge) + a depthwise ConvTranspose of the fixed filter
(its crop folded into the pads). The curve head adds the input and its colour map (1×1
Conv, Relu, 1×1 Conv) after the crop, then Clip.

Needs only `onnx` and numpy; the graph is checked against the JAX network in
tests/test_export.py.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import onnx
from onnx import TensorProto
from onnx import helper
from onnx import numpy_helper

from cyclegan_jax.nets import spec

OPSET = 17
# The IR version of opset 17's release (ONNX 1.12), so that older runtimes load it too.
IR_VERSION = 8


class _Graph:
  """Collects nodes and initializers under unique names."""

  def __init__(self):
    self.nodes: list[onnx.NodeProto] = []
    self.initializers: list[onnx.TensorProto] = []
    self._count = 0

  def name(self, prefix: str) -> str:
    self._count += 1
    return f'{prefix}_{self._count}'

  def const(self, prefix: str, value: np.ndarray) -> str:
    name = self.name(prefix)
    self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
    return name

  def op(
    self,
    op_type: str,
    inputs: list[str],
    prefix: str | None = None,
    output: str | None = None,
    **attrs: Any,
  ) -> str:
    output = output or self.name(prefix or op_type.lower())
    self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
    return output


def _conv_weight(kernel: Any) -> np.ndarray:
  """Flax HWIO (or a transposed conv's HWOI) → ONNX OIHW (or ConvTranspose's IOHW)."""
  return np.ascontiguousarray(np.transpose(np.asarray(kernel, np.float32), (3, 2, 0, 1)))


def _reflect_pad(g: _Graph, x: str, pad: int) -> str:
  pads = g.const('pads', np.array([0, 0, pad, pad, 0, 0, pad, pad], np.int64))
  return g.op('Pad', [x, pads], mode='reflect')


def _conv(
  g: _Graph,
  x: str,
  layer: Mapping[str, Any],
  name: str,
  *,
  stride: int = 1,
  padding: int = 0,
) -> str:
  kernel = np.asarray(layer['kernel'])
  w = g.const(f'{name}.weight', _conv_weight(kernel))
  b = g.const(f'{name}.bias', np.asarray(layer['bias'], np.float32))
  return g.op(
    'Conv',
    [x, w, b],
    prefix=name,
    kernel_shape=list(kernel.shape[:2]),
    strides=[stride, stride],
    pads=[padding] * 4,
  )


def _instance_norm(g: _Graph, x: str, channels: int) -> str:
  scale = g.const('in_scale', np.ones(channels, np.float32))
  bias = g.const('in_bias', np.zeros(channels, np.float32))
  return g.op('InstanceNormalization', [x, scale, bias], epsilon=spec.NORM_EPS)


def _blur_downsample(g: _Graph, x: str, channels: int) -> str:
  """models.blur_downsample: reflect-pad 1, [1, 2, 1]⊗[1, 2, 1] / 16 blur, stride 2."""
  taps = np.array([1.0, 2.0, 1.0], np.float32)
  kernel = np.outer(taps, taps) / 16.0
  w = g.const('blur', np.broadcast_to(kernel, (channels, 1, 3, 3)).copy())
  return g.op(
    'Conv',
    [_reflect_pad(g, x, 1), w],
    prefix='blur',
    kernel_shape=[3, 3],
    strides=[2, 2],
    group=channels,
  )


def _blur_upsample(g: _Graph, x: str, channels: int) -> str:
  """models.blur_upsample as the official Upsample computes it: edge-pad 1, the
  [1, 3, 3, 1]⊗[1, 3, 3, 1] / 16 filter as a depthwise ConvTranspose at stride 2 with
  padding 2, then one row and column cropped on each side."""
  taps = np.array([1.0, 3.0, 3.0, 1.0], np.float32)
  kernel = np.outer(taps, taps) / 16.0
  w = g.const('blur_up', np.broadcast_to(kernel, (channels, 1, 4, 4)).copy())
  pads = g.const('pads', np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
  y = g.op('Pad', [x, pads], mode='edge')
  y = g.op(
    'ConvTranspose',
    [y, w],
    prefix='blur_up',
    kernel_shape=[4, 4],
    strides=[2, 2],
    pads=[3, 3, 3, 3],
    group=channels,
  )
  return y


def _upsample(g: _Graph, y: str, layer: Mapping[str, Any], name: str, op: str) -> str:
  """The ×2 layer of an upsampling stage (`spec.UPSAMPLING_OPS`)."""
  if op == 'resize_conv':
    scales = g.const('scales', np.array([1, 1, 2, 2], np.float32))
    y = g.op(
      'Resize',
      [y, '', scales],
      mode='nearest',
      coordinate_transformation_mode='asymmetric',
      nearest_mode='floor',
    )
    return _conv(g, _reflect_pad(g, y, 1), layer, name)
  w = g.const(f'{name}.weight', _conv_weight(layer['kernel']))
  b = g.const(f'{name}.bias', np.asarray(layer['bias'], np.float32))
  # torch's ConvTranspose2d(3, stride=2, padding=1, output_padding=1).
  return g.op(
    'ConvTranspose',
    [y, w, b],
    prefix=name,
    kernel_shape=[3, 3],
    strides=[2, 2],
    pads=[1, 1, 1, 1],
    output_padding=[1, 1],
  )


def _layer(params: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any]:
  for key in path:
    params = params[key]
  return params


def _stage(
  g: _Graph, y: str, stage: spec.Stage, params: Mapping[str, Any], channels: int
) -> str:
  """A stage's layer, before its norm and activation; `channels`: y's."""
  name = stage.path[0]
  if stage.op == 'blur':
    return _blur_downsample(g, y, channels)
  if stage.op == 'blur_up':
    return _blur_upsample(g, y, channels)
  layer = _layer(params, stage.path)
  if stage.op in spec.UPSAMPLING_OPS:
    return _upsample(g, y, layer, name, stage.op)
  name = '.'.join(stage.path)
  if stage.pad_mode == 'reflect':
    return _conv(g, _reflect_pad(g, y, stage.pad), layer, name, stride=stage.stride)
  return _conv(g, y, layer, name, stride=stage.stride, padding=stage.pad)


_ACTIVATIONS = {'relu': 'Relu', 'tanh': 'Tanh'}


def _pixel_curve(g: _Graph, x: str, params: Mapping[str, Any]) -> str:
  """models.PixelCurve of NCHW x."""
  h = g.op('Relu', [_conv(g, x, params['curve']['hidden'], 'curve.hidden')])
  return _conv(g, h, params['curve']['out'], 'curve.out')


def generator_graph(
  params: Mapping[str, Any],
  *,
  input_name: str,
  output_name: str,
  metadata: Mapping[str, str] | None = None,
  doc: str = '',
  upsample: str = 'transpose',
  downsample: str = 'stride',
  head: str = 'tanh',
) -> onnx.ModelProto:
  """The generator with these parameters as an ONNX model (opset 17, float32).

  Args:
    params: a ResnetGenerator's parameters ({'stem', 'down_0', ..., 'block_i', ...,
      'up_0', 'up_1', 'head'}).
    upsample, downsample, head: the generator's layout (`spec.generator_layout`);
      the curve head needs as many input channels as output channels.
    input_name: the graph input: float32 [batch, height, width, 3] in [-1, 1].
    output_name: the graph output, same shape and range.
    metadata: string pairs stored as the model's metadata_props.
    doc: the model's doc_string.

  Returns:
    A checked ModelProto.

  Raises:
    ValueError: an unknown mode (one line), or the curve head between different
      channel counts.
  """
  channels = (
    np.shape(params['stem']['kernel'])[2],
    np.shape(params['head']['kernel'])[3],
  )
  num_blocks = sum(1 for k in params if str(k).startswith('block_'))
  ngf = int(np.shape(params['stem']['kernel'])[-1])
  stages = spec.generator_stages(
    ngf, num_blocks, channels[1], upsample=upsample, downsample=downsample, head=head
  )
  if spec.residual_head(head) and channels[0] != channels[1]:
    raise ValueError(
      f'The ONNX graph of a {head} head needs as many input as output channels, got '
      f'{channels[0]} → {channels[1]}.'
    )
  g = _Graph()
  x = g.op('Transpose', [input_name], perm=[0, 3, 1, 2])  # NHWC → NCHW.
  image = x

  # Pad height and width up to multiples of 4 (the two stride-2 stages), reflecting.
  hw = g.op(
    'Slice',
    [
      g.op('Shape', [x]),
      g.const('two', np.array([2], np.int64)),
      g.const('four', np.array([4], np.int64)),
    ],
  )
  four = g.const('four', np.array(2**spec.SCALES, np.int64))
  pad_hw = g.op('Mod', [g.op('Sub', [four, g.op('Mod', [hw, four])]), four])
  pads = g.op('Concat', [g.const('zeros', np.zeros(6, np.int64)), pad_hw], axis=0)
  x = g.op('Pad', [x, pads], mode='reflect')

  y, width, kept = x, channels[0], {}
  for index, stage in enumerate(stages):
    if stage.keep_input:
      kept[index] = y
    y = _stage(g, y, stage, params, width)
    width = stage.features or width
    if stage.norm:
      y = _instance_norm(g, y, width)
    if stage.act != 'none':
      y = g.op(_ACTIVATIONS[stage.act], [y])
    if stage.add_input_of is not None:
      y = g.op('Add', [kept.pop(stage.add_input_of), y])

  y = g.op(
    'Slice',
    [
      y,
      g.const('zeros', np.zeros(2, np.int64)),
      hw,
      g.const('axes', np.array([2, 3], np.int64)),
    ],
  )
  if spec.head_finish(head):  # models.finish_head, at the input's size.
    y = g.op('Add', [y, _pixel_curve(g, image, params)])
  if head == 'curve':  # clip(conv + input + curve(input), -1, 1).
    low = g.const('clip_min', np.array(-1.0, np.float32))
    high = g.const('clip_max', np.array(1.0, np.float32))
    y = g.op('Clip', [g.op('Add', [y, image]), low, high])
  elif head == 'colour_skip':  # tanh(conv + curve(input)).
    y = g.op('Tanh', [y])
  g.op('Transpose', [y], output=output_name, perm=[0, 2, 3, 1])  # NCHW → NHWC.

  dims = ['batch', 'height', 'width', 3]
  graph = helper.make_graph(
    g.nodes,
    'cyclegan_generator',
    [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, dims)],
    [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, dims)],
    initializer=g.initializers,
  )
  model = helper.make_model(
    graph,
    opset_imports=[helper.make_opsetid('', OPSET)],
    producer_name='cyclegan_jax.deploy.export',
    doc_string=doc,
  )
  model.ir_version = IR_VERSION
  for key, value in (metadata or {}).items():
    model.metadata_props.add(key=key, value=value)
  onnx.checker.check_model(model, full_check=True)
  return model
