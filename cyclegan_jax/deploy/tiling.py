"""Exact tiled translation: the generator run layer by layer over tiles of the image.

Every InstanceNorm normalises with statistics of the *whole* image, so translating tiles
independently changes the result. Here the generator runs one stage (a conv and what
follows it) at a time over the whole image, tile by tile:

- each stage reads its input tiles with the halo its kernel needs from the host-held map
  of the previous stage; reflection padding is applied at the image's borders only (as
  index arithmetic on the host), zero padding as a mask after the previous stage's norm;
- the previous stage's norm (with its whole-image statistics), activation and residual
  add are applied to the tile on the device before the conv, since they are elementwise;
- each tile returns its conv output and its channel sums and squared deviations, which
  the host combines exactly (Chan's parallel formula in float64) into the statistics the
  next stage normalises with.

Only the per-tile function runs on the device, compiled once per stage shape: edge tiles
are shifted inside the image rather than shrunk, so every tile of a stage has one shape.
The host keeps the maps the scheme needs (docs/tiling.md). The layer plan is the
generator's own description (`spec.generator_stages`), checked against its parameters by
`plan_for`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from cyclegan_jax.nets import cpu_forms
from cyclegan_jax.nets import models
from cyclegan_jax.nets import spec

PyTree = Any
Stage = spec.Stage
UPSAMPLING_OPS = spec.UPSAMPLING_OPS


class UnsupportedLayoutError(ValueError):
  """The generator's layers are not ones the tiled path knows."""


# The ResnetGenerator fields the plan reproduces; any other field must keep its default.
# remat changes only how gradients are computed, not the forward pass.
_KNOWN_FIELDS = {
  'ngf',
  'num_blocks',
  'output_channels',
  'dtype',
  'conv_impl',
  'remat',
  'upsample',
  'downsample',
  'head',
}


def _unsupported(what: str) -> UnsupportedLayoutError:
  return UnsupportedLayoutError(
    f'Tiled translation does not know this generator ({what}); translate it untiled '
    '(--tile=0) or add its layers to cyclegan_jax/deploy/tiling.py.'
  )


def _kernel_shape(params: PyTree, path: tuple[str, ...]) -> tuple[int, ...]:
  node = params
  for key in path:
    if not isinstance(node, dict) or key not in node:
      raise _unsupported(f'no parameters {"/".join(path)}')
    node = node[key]
  if not isinstance(node, dict) or set(node) != {'kernel', 'bias'}:
    raise _unsupported(f'{"/".join(path)} is not a biased conv')
  return tuple(node['kernel'].shape)


def refusal(generator: Any, stats: PyTree, model_eval: bool) -> str | None:
  """Why `generator` cannot be translated over tiles with the untiled result, in one
  line; None where the tiled path may try it (`plan_for` then checks its layers)."""
  if jax.tree.leaves(stats) and not model_eval:
    return (
      '--tile: in the default test mode the batch norms use the statistics of the '
      'whole image, so every tile would depend on all the others; translate untiled '
      '(drop --tile)'
    )
  downs = getattr(generator, 'num_downs', None)
  if downs:
    return (
      f'--tile: a U-Net reduces the image {2**downs}-fold to a 1×1 bottleneck, so '
      'every output pixel depends on the whole image and tiles cannot give the '
      'untiled result; translate untiled (drop --tile)'
    )
  return None


def plan_for(generator: Any, params: PyTree) -> list[Stage]:
  """The stages of `models.ResnetGenerator` `generator` (`spec.generator_stages`),
  checked against `params`.

  Raises:
    UnsupportedLayoutError: another module, a field set to a value the plan does not
      reproduce, or parameters of another layout (one line naming what differs).
    ValueError: an unknown upsample, downsample or head mode (one line).
  """
  if type(generator) is not models.ResnetGenerator:
    raise _unsupported(type(generator).__name__)
  for field in dataclasses.fields(generator):
    if field.name in _KNOWN_FIELDS or field.name in ('parent', 'name'):
      continue
    if field.default is not dataclasses.MISSING and (
      getattr(generator, field.name) != field.default
    ):
      raise _unsupported(f'{field.name}={getattr(generator, field.name)!r}')
  stages = generator.stages()  # An unknown mode: spec's one-line ValueError.
  expected = {stage.path[0] for stage in stages}
  if spec.head_finish(generator.head):
    expected.add('curve')
  if not isinstance(params, dict) or set(params) != expected:
    got = set(params) if isinstance(params, dict) else set()
    extra = sorted(got - expected) or sorted(expected - got)
    raise _unsupported(f'parameters {", ".join(extra[:4])} differ from its layers')
  for stage in stages:
    if not stage.has_params():
      continue
    shape = _kernel_shape(params, stage.path)
    if shape[:2] != (stage.kernel, stage.kernel):
      raise _unsupported(f'{"/".join(stage.path)} has a {shape[0]}×{shape[1]} kernel')
  if spec.head_finish(generator.head):
    for layer in ('hidden', 'out'):
      if _kernel_shape(params, ('curve', layer))[:2] != (1, 1):
        raise _unsupported(f'curve/{layer} is not a 1×1 conv')
  # The curve and colour_skip heads' stage returns the conv's output; `_finish_head`
  # finishes it with the input.
  return list(stages)


# --- Tile sizes ---------------------------------------------------------------------


def tile_multiple(plan: list[Stage]) -> int:
  """Full-resolution pixels per pixel of the coarsest map: tiles are multiples of it."""
  scale, coarsest = 1.0, 1.0
  for stage in plan:
    scale *= stage.scale()
    coarsest = min(coarsest, scale)
  return round(1 / coarsest)


def min_tile(plan: list[Stage]) -> int:
  """The smallest tile whose every stage's tile is at least twice the halo it reads."""
  need, scale = tile_multiple(plan), 1.0
  for stage in plan:
    need = max(need, int(np.ceil(2 * stage.halo() / scale)))
    scale *= stage.scale()
  multiple = tile_multiple(plan)
  return -(-need // multiple) * multiple


def check_tile(tile: int, overlap: int, plan: list[Stage]) -> None:
  """Raises ValueError (one line, with the nearest valid value) for a bad --tile/--overlap."""
  multiple, smallest = tile_multiple(plan), min_tile(plan)
  if tile < smallest:
    raise ValueError(
      f'--tile={tile} is smaller than this generator allows: its tiles must cover the '
      f'halo each layer reads at its resolution; nearest valid value: --tile={smallest}.'
    )
  if tile % multiple:
    nearest = max(smallest, int(round(tile / multiple)) * multiple)
    raise ValueError(
      f'--tile={tile} is not a multiple of {multiple} (the generator downsamples by '
      f'{multiple}); nearest valid value: --tile={nearest}.'
    )
  if overlap < 0 or overlap % multiple or overlap > tile - multiple:
    nearest = min(max(0, int(round(overlap / multiple)) * multiple), tile - multiple)
    raise ValueError(
      f'--overlap={overlap} must be a multiple of {multiple} from 0 to --tile - '
      f'{multiple} = {tile - multiple}; nearest valid value: --overlap={nearest}.'
    )


def spans(size: int, tile: int, step: int) -> list[tuple[int, int]]:
  """(start, first new pixel within the tile) of the tiles covering `size` pixels.

  Tiles start every `step` pixels; the last is shifted back to end at `size`, so all
  have one length, min(tile, size). Pixels before the second number were covered by
  the previous tile (they count once in the statistics).
  """
  if size <= tile:
    return [(0, 0)]
  starts = list(range(0, size - tile, step)) + [size - tile]
  out = [(starts[0], 0)]
  for prev, start in zip(starts, starts[1:]):
    if start > prev:
      out.append((start, max(0, prev + tile - start)))
  return out


# --- The per-tile computation ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _TileSpec:
  """What the jitted tile function does: static, so each distinct spec compiles once."""

  stage: Stage
  in_norm: bool
  in_act: str
  zero_mask: bool
  out_size: tuple[int, int]
  forms: cpu_forms.Forms


def _activate(x: jax.Array, act: str) -> jax.Array:
  if act == 'relu':
    return jax.nn.relu(x)
  if act == 'tanh':
    return jnp.tanh(x)
  return x


def _plain_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
  return jax.lax.conv_general_dilated(
    x, kernel, (stride, stride), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )


def _blur(x: jax.Array) -> jax.Array:
  """`models.blur_downsample` on an already padded window (the same sums, in order)."""
  x = (x[:, :-2] + 2 * x[:, 1:-1] + x[:, 2:]) / 4
  x = (x[:, :, :-2] + 2 * x[:, :, 1:-1] + x[:, :, 2:]) / 4
  return x[:, ::2, ::2]


def _blur_up(x: jax.Array) -> jax.Array:
  """`models.blur_upsample` on a window already padded by one (edge) input pixel."""
  n, h, w, c = x.shape
  even = 0.25 * x[:, :-2] + 0.75 * x[:, 1:-1]
  odd = 0.75 * x[:, 1:-1] + 0.25 * x[:, 2:]
  x = jnp.stack([even, odd], axis=2).reshape(n, 2 * (h - 2), w, c)
  even = 0.25 * x[:, :, :-2] + 0.75 * x[:, :, 1:-1]
  odd = 0.75 * x[:, :, 1:-1] + 0.25 * x[:, :, 2:]
  return jnp.stack([even, odd], axis=3).reshape(n, 2 * (h - 2), 2 * (w - 2), c)


def _conv(spec: _TileSpec, x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
  stage, forms = spec.stage, spec.forms
  if stage.op == 'blur':
    return _blur(x)
  if stage.op == 'blur_up':
    return _blur_up(x)
  if stage.op == 'conv_transpose':
    if forms.subpixel:
      conv = cpu_forms.conv_form(forms, jnp.float32, 2, 1)
      return cpu_forms.subpixel_conv_transpose(x, kernel, bias, conv=conv)
    y = jax.lax.conv_transpose(
      x,
      kernel,
      (2, 2),
      ((1, 2), (1, 2)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      transpose_kernel=True,
    )
    return y + bias
  if stage.head and forms.head:  # The generator's head (`models`).
    return cpu_forms.shifted_matmul_conv(x, kernel) + bias
  # 'conv', and 'resize_conv' (its window is already upsampled and padded on the host).
  stride = 1 if stage.op == 'resize_conv' else stage.stride
  op = cpu_forms.conv_form(forms, jnp.float32, stage.kernel, stride)
  if op is not None:
    return op(x, kernel) + bias
  return _plain_conv(x, kernel, stride) + bias


def _tile_step(
  spec: _TileSpec,
  raw: jax.Array,
  residual: jax.Array | None,
  mean: jax.Array,
  inv_std: jax.Array,
  row_ok: jax.Array,
  col_ok: jax.Array,
  kernel: jax.Array,
  bias: jax.Array,
  row_new: jax.Array,
  col_new: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array | None]:
  """One tile of one stage: the input's norm/act/skip, the conv, the tile's statistics.

  Returns:
    (output tile, channel sums over the new pixels, their squared deviations from the
    tile's mean, the input tile's interior or None).
  """
  stage = spec.stage
  x = raw
  if spec.in_norm:
    x = (x - mean) * inv_std
  x = _activate(x, spec.in_act)
  if residual is not None:
    x = x + residual
  if spec.zero_mask:  # Zero padding comes after the previous norm, at the image border.
    x = x * (row_ok[:, None] * col_ok[None, :])[None, :, :, None]
  kept = None
  if stage.keep_input:  # Stride 1: the interior is the input at the output's pixels.
    p, (h, w) = stage.pad, spec.out_size
    kept = x[:, p : p + h, p : p + w]
  y = _conv(spec, x, kernel, bias)[:, : spec.out_size[0], : spec.out_size[1]]
  if not stage.norm:
    y = _activate(y, stage.act)
  weight = (row_new[:, None] * col_new[None, :])[None, :, :, None]
  count = jnp.maximum(jnp.sum(weight), 1.0)
  sums = jnp.sum(y * weight, axis=(0, 1, 2))
  m2 = jnp.sum(weight * (y - sums / count) ** 2, axis=(0, 1, 2))
  return y, sums, m2, kept


_tile_fn = jax.jit(_tile_step, static_argnums=0)


# --- Host side ------------------------------------------------------------------------


@dataclasses.dataclass
class _Map:
  """A stage's output as the next stage reads it: act(norm(raw)) + residual."""

  raw: np.ndarray  # (H, W, C) float32.
  mean: np.ndarray | None = None
  inv_std: np.ndarray | None = None
  act: str = 'none'
  residual: np.ndarray | None = None


class _Stats:
  """Exact whole-map channel mean and variance from per-tile (count, sum, M2)."""

  def __init__(self) -> None:
    self.parts: list[tuple[int, np.ndarray, np.ndarray]] = []

  def add(self, count: int, sums: np.ndarray, m2: np.ndarray) -> None:
    if count:
      self.parts.append((count, np.float64(sums), np.float64(m2)))

  def mean_inv_std(self) -> tuple[np.ndarray, np.ndarray]:
    total = sum(n for n, _, _ in self.parts)
    mean = sum(s for _, s, _ in self.parts) / total
    m2 = sum(m + n * (s / n - mean) ** 2 for n, s, m in self.parts)
    var = m2 / total  # Biased, as nn.InstanceNorm2d.
    return mean.astype(np.float32), (1.0 / np.sqrt(var + spec.NORM_EPS)).astype(
      np.float32
    )


def _source_index(
  start: int, count: int, size: int, mode: str
) -> tuple[np.ndarray, np.ndarray]:
  """Indices into an axis of `size` for positions start..start+count-1, and validity
  ('zero': outside positions read the edge, marked invalid; 'replicate': the same
  indices, whose validity the caller ignores)."""
  index = np.arange(start, start + count)
  if mode == 'reflect':
    index = np.abs(index)
    index = np.where(index >= size, 2 * (size - 1) - index, index)
    return index, np.ones(count, np.float32)
  ok = (index >= 0) & (index < size)
  return np.clip(index, 0, size - 1), ok.astype(np.float32)


def _gather(array: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """array[rows][:, cols] for a tile, copying only the tile's bounding box."""
  r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
  box = array[r0:r1, c0:c1]
  if (
    r1 - r0 == len(rows)
    and c1 - c0 == len(cols)
    and (np.diff(rows) == 1).all()
    and (np.diff(cols) == 1).all()
  ):
    return np.ascontiguousarray(box)[None]
  return box[np.ix_(rows - r0, cols - c0)][None]


def _input_index(
  stage: Stage, start: int, out_len: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
  """Indices into an input axis of `size` that a tile of `out_len` outputs from `start`
  reads, and their validity (`_source_index`).

  The upsampling stages' tiles start on even outputs: at half and full resolution the
  map sizes, tiles and steps are even (`check_tile`'s multiples of 4 in image pixels).
  """
  if stage.op in UPSAMPLING_OPS:
    assert start % 2 == 0 and out_len % 2 == 0, (stage.path, start, out_len)
  if stage.op == 'conv_transpose':  # Output 2a+j reads inputs a+floor(j/2) and one more.
    return _source_index(start // 2, out_len // 2 + 1, size, stage.pad_mode)
  if stage.op == 'blur_up':  # Outputs 2a, 2a+1 read inputs a-1..a+1, clamped.
    return _source_index(start // 2 - 1, out_len // 2 + 2, size, 'replicate')
  if stage.op == 'resize_conv':  # Reflect at the upsampled size, then nearest: u // 2.
    index, ok = _source_index(start - 1, out_len + 2, 2 * size, 'reflect')
    return index // 2, ok
  first = start * stage.stride - stage.pad
  return _source_index(
    first, (out_len - 1) * stage.stride + stage.kernel, size, stage.pad_mode
  )


def _out_size(stage: Stage, size: int) -> int:
  if stage.op in UPSAMPLING_OPS:
    return 2 * size
  return (size + 2 * stage.pad - stage.kernel) // stage.stride + 1


def _out_channels(stage: Stage, kernel: jax.Array, source: np.ndarray) -> int:
  if not stage.has_params():
    return source.shape[-1]
  if stage.op == 'conv_transpose':  # (3, 3, out, in).
    return kernel.shape[2]
  return kernel.shape[3]


def _params_of(stage: Stage, params: PyTree) -> tuple[jax.Array, jax.Array]:
  if not stage.has_params():  # No parameters: empty placeholders for the tile function.
    return jnp.zeros((0,), jnp.float32), jnp.zeros((0,), jnp.float32)
  node = params
  for key in stage.path:
    node = node[key]
  return jnp.asarray(node['kernel'], jnp.float32), jnp.asarray(node['bias'], jnp.float32)


@dataclasses.dataclass
class TileReport:
  """What a tiled run compiled: per stage, the device bytes of one tile.

  Attributes:
    device_bytes: stage path -> argument + output + temporary bytes of its tile function.
    by_spec: the same per compiled function (the blocks' convs share one).
  """

  device_bytes: dict[str, int] = dataclasses.field(default_factory=dict)
  by_spec: dict[Any, int] = dataclasses.field(default_factory=dict)


def _run_stage(
  stage: Stage,
  source: _Map,
  kernel: jax.Array,
  bias: jax.Array,
  *,
  scale: float,
  tile: int,
  step: int,
  forms: cpu_forms.Forms,
  report: TileReport | None,
) -> tuple[np.ndarray, _Stats, np.ndarray | None]:
  """Runs one stage over the whole map, tile by tile; returns (raw output, stats, kept)."""
  in_h, in_w, _ = source.raw.shape
  out_h, out_w = _out_size(stage, in_h), _out_size(stage, in_w)
  out_scale = scale * stage.scale()
  t_out, s_out = round(tile * out_scale), round(step * out_scale)
  th, tw = min(t_out, out_h), min(t_out, out_w)
  spec = _TileSpec(
    # Without its name: the blocks' convs of one shape share one compiled function.
    dataclasses.replace(stage, path=(), add_input_of=None),
    in_norm=source.mean is not None,
    in_act=source.act,
    zero_mask=stage.pad_mode == 'zero',
    out_size=(th, tw),
    forms=forms,
  )
  raw = np.empty((out_h, out_w, _out_channels(stage, kernel, source.raw)), np.float32)
  kept = np.empty_like(source.raw) if stage.keep_input else None
  stats = _Stats()
  ones = np.ones(1, np.float32)
  mean = source.mean if source.mean is not None else ones
  inv_std = source.inv_std if source.inv_std is not None else ones

  def write(pending) -> None:
    (r0, rn), (c0, cn), outputs = pending
    y, sums, m2, interior = jax.device_get(outputs)
    raw[r0 : r0 + th, c0 : c0 + tw] = y[0]
    if kept is not None:
      kept[r0 : r0 + th, c0 : c0 + tw] = interior[0]
    stats.add((th - rn) * (tw - cn), sums, m2)

  pending = None
  for (r0, rn), (c0, cn) in _grid(out_h, out_w, t_out, s_out):
    rows, row_ok = _input_index(stage, r0, th, in_h)
    cols, col_ok = _input_index(stage, c0, tw, in_w)
    residual = None if source.residual is None else _gather(source.residual, rows, cols)
    row_new = (np.arange(th) >= rn).astype(np.float32)
    col_new = (np.arange(tw) >= cn).astype(np.float32)
    args = (
      spec,
      _gather(source.raw, rows, cols),
      residual,
      mean,
      inv_std,
      row_ok,
      col_ok,
      kernel,
      bias,
      row_new,
      col_new,
    )
    if report is not None and '/'.join(stage.path) not in report.device_bytes:
      key = (spec, source.raw.shape[-1], residual is None)
      if key not in report.by_spec:
        report.by_spec[key] = device_bytes(*args)
      report.device_bytes['/'.join(stage.path)] = report.by_spec[key]
    outputs = _tile_fn(*args)  # Dispatched asynchronously: the next gather overlaps it.
    if pending is not None:
      write(pending)
    pending = ((r0, rn), (c0, cn), outputs)
  write(pending)
  return raw, stats, kept


def _grid(
  height: int, width: int, tile: int, step: int
) -> Iterator[tuple[tuple[int, int], tuple[int, int]]]:
  """The tiles of a map, row-major: ((row start, new from), (col start, new from))."""
  for row in spans(height, tile, step):
    for col in spans(width, tile, step):
      yield row, col


def device_bytes(spec: _TileSpec, *args: Any) -> int:
  """Argument + output + temporary bytes of the compiled tile function for these args."""
  analysis = _tile_fn.lower(spec, *args).compile().memory_analysis()
  if analysis is None:
    return -1
  return int(
    analysis.argument_size_in_bytes
    + analysis.output_size_in_bytes
    + analysis.temp_size_in_bytes
  )


def translate_tiled(
  generator: Any,
  params: PyTree,
  image: np.ndarray,
  *,
  tile: int,
  overlap: int = 0,
  report: TileReport | None = None,
) -> np.ndarray:
  """The generator applied to one image, computed over tiles; equals the untiled output.

  Args:
    generator: a `models.ResnetGenerator` (its `conv_impl` picks the conv forms; the
      tiles compute in float32 whatever its dtype).
    params: its parameters.
    image: (H, W, C) float32 in [-1, 1].
    tile: the tile's side in image pixels (see `check_tile`).
    overlap: pixels neighbouring tiles share (computed twice); any valid value gives the
      same output, since each layer reads the halo it needs itself.
    report: filled with each stage's device bytes per tile, if given.

  Returns:
    The (H, W, output channels) float32 output in [-1, 1].
  """
  plan = plan_for(generator, params)
  check_tile(tile, overlap, plan)
  channels = _kernel_shape(params, plan[0].path)[2]
  if image.ndim != 3 or image.shape[-1] != channels:
    raise ValueError(
      f'The generator takes {channels}-channel images, got shape {image.shape}.'
    )
  height, width = image.shape[:2]
  multiple = tile_multiple(plan)
  forms = cpu_forms.forms_for(generator.conv_impl, jnp.float32)
  # As the generator does: reflect-pad to a multiple of its downsampling, crop after.
  # Each map is dropped once the next stage has read it (host memory: docs/tiling.md).
  source = _Map(
    np.pad(
      np.asarray(image, np.float32),
      ((0, -height % multiple), (0, -width % multiple), (0, 0)),
      mode='reflect',
    )
  )
  inputs, scale = [], 1.0
  for stage in plan:
    kernel, bias = _params_of(stage, params)
    raw, stats, kept = _run_stage(
      stage,
      source,
      kernel,
      bias,
      scale=scale,
      tile=tile,
      step=tile - overlap,
      forms=forms,
      report=report,
    )
    inputs.append(kept)
    residual = inputs[stage.add_input_of] if stage.add_input_of is not None else None
    if stage.add_input_of is not None:
      inputs[stage.add_input_of] = None  # Read once, by the next stage.
    if stage.norm:
      mean, inv_std = stats.mean_inv_std()
      source = _Map(raw, mean, inv_std, stage.act, residual)
    else:
      source = _Map(raw, residual=residual)
    scale *= stage.scale()
  output = source.raw[:height, :width]
  if spec.head_finish(generator.head):
    _finish_head(generator.head, params, np.asarray(image, np.float32), output)
  return output


# Pixels per call of the heads' pointwise finish: bounds its device copies.
FINISH_PIXELS = 1 << 20


def _head_output(head: str, raw: jax.Array, image: jax.Array, curve: PyTree) -> jax.Array:
  """`models.ResnetGenerator`'s last line for the curve and colour_skip heads, on
  (1, h, W, C) rows."""
  tint = models.PixelCurve(raw.shape[-1]).apply({'params': curve}, image)
  return models.finish_head(head, raw, image, tint)


_head_fn = jax.jit(_head_output, static_argnums=0)


def _finish_head(
  head: str, params: PyTree, image: np.ndarray, output: np.ndarray
) -> None:
  """Replaces the head conv's `output` (H, W, C) by the generator's output (curve:
  clip(output + the input + curve); colour_skip: tanh(output + curve)), in place, a
  block of rows at a time: it is pointwise, so no halo."""
  height, width = output.shape[:2]
  rows = max(1, FINISH_PIXELS // width)
  for r0 in range(0, height, rows):
    r1 = min(height, r0 + rows)
    output[r0:r1] = _head_fn(
      head, output[None, r0:r1], image[None, r0:r1], params['curve']
    )[0]


# --- When to tile ---------------------------------------------------------------------

# The tile automatic tiling uses: a few hundred MB of device memory per tile at ngf 16
# (docs/tiling.md), and large enough that the halos cost little.
AUTO_TILE = 512
# Peak bytes of an untiled translation per image pixel and per generator filter (ngf):
# measured on CPU at ngf 16, about 74 (docs/tiling.md), rounded up.
UNTILED_BYTES_PER_PIXEL_PER_FILTER = 80
# The share of the free memory an untiled translation may plan to use.
HEADROOM = 0.8


def untiled_bytes(params: PyTree, height: int, width: int, batch: int = 1) -> int:
  """The estimated peak memory of translating `batch` H×W images untiled."""
  first = params.get('stem') or params.get('down_0')  # A ResNet's or a U-Net's.
  ngf = int(first['kernel'].shape[-1]) if first else 64
  return UNTILED_BYTES_PER_PIXEL_PER_FILTER * ngf * height * width * batch


def available_bytes(device: jax.Device | None = None) -> int:
  """Free memory of `device` (default: the first), or the host's where it has no stats."""
  device = device or jax.devices()[0]
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  # Backends without stats raise.
    stats = None
  if stats and 'bytes_limit' in stats:
    return int(stats['bytes_limit'] - stats.get('bytes_in_use', 0))
  try:
    with open('/proc/meminfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
