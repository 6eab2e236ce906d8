r"""Exports a trained or converted generator for use outside JAX.

  python -m cyclegan_jax.deploy.export --workdir=DIR --direction=AtoB|BtoA \
      --format=stablehlo|saved_model|tflite|onnx --output=PATH [--step=N] \
      [--size=N|H,W] [--overwrite] [--weights=auto|ema|raw] [--json]

DIR is anything `cyclegan_jax.deploy.translate` takes: a training workdir (latest checkpoint, or
--step) or the output of `cyclegan_jax.deploy.convert` (a model-zoo file holds only AtoB).
Formats:
  stablehlo    `jax.export` serialization; any batch, height and width (>= 5).
  saved_model  a TensorFlow SavedModel (jax2tf), signature `serving_default`; any batch,
               height and width (>= 5).
  tflite       a TFLite flatbuffer of one fixed size, batch 1 (--size, default the
               training crop).
  onnx         an ONNX model (opset 17); dynamic batch, height and width (>= 5).

Every artifact computes the plain float32 network (conv_impl 'xla', never the
`nets.cpu_forms` rewrites, whatever dtype it was trained in) and takes and returns float32 NHWC RGB images in
[-1, 1] (uint8 x in: x / 127.5 - 1; out: round((y + 1) * 127.5)). PATH.json, written next
to it, records the model config, step, direction, format version and this convention.
A run that kept a weight average (config.ema.decay > 0) exports it unless --weights=raw.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any, Callable, Sequence

from absl import flags
from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from orbax import checkpoint as ocp

from cyclegan_jax.cli import app
from cyclegan_jax.cli import console
from cyclegan_jax.cli import errors
from cyclegan_jax.cli import flags as cli_flags
from cyclegan_jax.deploy import inference
from cyclegan_jax.nets import models
from cyclegan_jax.nets import spec
from cyclegan_jax.train import checkpoints

FORMATS = ('stablehlo', 'saved_model', 'tflite', 'onnx')
# The one I/O convention of every format, named in its signature / tensor names.
INPUT_NAME = 'images_nhwc_rgb_m1to1'
OUTPUT_NAME = 'translated_nhwc_rgb_m1to1'
SIGNATURE = 'serving_default'
IO_CONVENTION = {
  'dtype': 'float32',
  'layout': 'NHWC',
  'channels': 'RGB',
  'range': [-1.0, 1.0],
  'input_name': INPUT_NAME,
  'output_name': OUTPUT_NAME,
  'from_uint8': 'x / 127.5 - 1',
  'to_uint8': 'clip(round((y + 1) * 127.5), 0, 255)',
}
# The smallest height and width: the 4×-downsampled bottleneck is reflect-padded by 1,
# which needs 2 rows; 5 rounds up to 8, whose bottleneck has 2.
MIN_SIZE = 5
# jax.export / jax2tf lower for all of them: the artifact runs wherever JAX or TF runs.
PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')


class ExportError(ValueError):
  """A request that cannot be exported (the message says what to do)."""


# --- The network as exported ------------------------------------------------------------


def plain_float32(generator: Any) -> Any:
  """The generator computing the plain float32 layers (no `cpu_forms` rewrites)."""
  fields = {f.name for f in dataclasses.fields(generator)}
  return generator.clone(
    dtype=jnp.float32, **({'conv_impl': 'xla'} if 'conv_impl' in fields else {})
  )


def _reflect_index(size: Any, padded: Any) -> jax.Array:
  """Indices 0..padded-1 into an axis of `size`, reflected past its end as numpy's
  'reflect' (periodically, for pads as long as the axis or longer)."""
  period = 2 * (size - 1)
  i = jnp.arange(padded) % period
  return jnp.where(i < size, i, period - i)


def test_mode_of(generator: Any, stats: Any, model_eval: bool) -> Any:
  """The `inference.TestMode` an export runs `generator` in, or None for a plain
  network (CycleGAN's ResNet: one mode, exported as it always was)."""
  if inference.size_multiple(generator) > 1 or inference.is_stateful(generator, stats):
    return inference.TestMode(model_eval=model_eval)
  return None


def forward_fn(
  generator: Any,
  *,
  explicit_conv_transposes: bool = False,
  mode: inference.TestMode | None = None,
) -> Callable[[Any, jax.Array], jax.Array]:
  """(weights, x [N, H, W, 3]) -> generator(x), for static or symbolic (jax.export) H, W.

  `weights` are the params, or with a test `mode` (a U-Net, batch norm or dropout)
  {'params', 'batch_stats'}, run as `inference.test_apply` runs them. The ResNet
  reflect-pads H and W up to multiples of 4 with `jnp.pad`, which cannot take a
  symbolic pad width (a U-Net needs multiples of 2**num_downs); for symbolic sizes the
  same padding is done here by a gather to the multiple, and the output is cropped
  back. `explicit_conv_transposes`: see `tflite_bytes`.
  """
  generator = plain_float32(generator)
  multiple = max(4, inference.size_multiple(generator))

  def call(weights: Any, x: jax.Array) -> jax.Array:
    if mode is None:
      return generator.apply({'params': weights}, x)
    return inference.test_apply(
      generator, weights['params'], weights['batch_stats'], x, mode
    )

  def apply(weights: Any, x: jax.Array) -> jax.Array:
    if not explicit_conv_transposes:
      return call(weights, x)
    with nn.intercept_methods(_explicit_conv_transposes):
      return call(weights, x)

  def forward(weights: Any, x: jax.Array) -> jax.Array:
    height, width = x.shape[1], x.shape[2]
    if isinstance(height, int) and isinstance(width, int):
      return apply(weights, x)
    m = multiple
    x = jnp.take(x, _reflect_index(height, m * ((height + m - 1) // m)), axis=1)
    x = jnp.take(x, _reflect_index(width, m * ((width + m - 1) // m)), axis=2)
    return apply(weights, x)[:, :height, :width, :]

  return forward


def symbolic_input() -> jax.ShapeDtypeStruct:
  """float32 (batch, height, width, 3) with height, width >= MIN_SIZE."""
  shape = jax.export.symbolic_shape(
    'batch, height, width, 3',
    constraints=(f'height >= {MIN_SIZE}', f'width >= {MIN_SIZE}'),
  )
  return jax.ShapeDtypeStruct(shape, jnp.float32)


def _explicit_conv_transpose(
  x: jax.Array,
  kernel: jax.Array,
  bias: jax.Array | None,
  padding: tuple[tuple[int, int], ...] = ((1, 2), (1, 2)),
) -> jax.Array:
  """A stride-2 `nn.ConvTranspose(transpose_kernel=True)` by its definition: the input
  dilated (one zero between pixels) and padded as the layer says (models.ConvTransposeUp:
  1 before, 2 after; the U-Net's: 2 and 2), then a stride-1 conv with the flipped,
  channel-swapped kernel."""
  (top, bottom), (left, right) = padding
  x = jax.lax.pad(
    x, jnp.zeros((), x.dtype), ((0, 0, 0), (top, bottom, 1), (left, right, 1), (0, 0, 0))
  )
  kernel = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
  y = jax.lax.conv_general_dilated(
    x, kernel.astype(x.dtype), (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC')
  )
  return y if bias is None else y + bias


def _explicit_conv_transposes(next_fun, args, kwargs, context):
  """A Flax method interceptor: `nn.ConvTranspose` by `_explicit_conv_transpose`."""
  if isinstance(context.module, nn.ConvTranspose) and context.method_name == '__call__':
    layer, module = context.module.variables['params'], context.module
    padding = module.padding
    if (
      tuple(module.strides) != (2, 2)
      or not module.transpose_kernel
      or not isinstance(padding, tuple)
    ):
      raise NotImplementedError(
        f'{module.name}: not a stride-2 transposed conv that '
        '_explicit_conv_transpose restates.'
      )
    padding = tuple(tuple(p) for p in padding)
    return _explicit_conv_transpose(
      args[0].astype(module.dtype or jnp.float32),
      layer['kernel'],
      layer.get('bias'),
      padding,
    )
  return next_fun(*args, **kwargs)


# --- The formats ------------------------------------------------------------------------


def stablehlo_bytes(
  generator: models.ResnetGenerator,
  params: Any,
  mode: inference.TestMode | None = None,
) -> tuple[bytes, dict[str, Any]]:
  """The serialized `jax.export.Exported` (symbolic batch, height, width); `params`
  are `forward_fn`'s weights for `mode`."""
  forward = forward_fn(generator, mode=mode)
  exported = jax.export.export(
    jax.jit(lambda x: forward(params, x)), platforms=PLATFORMS
  )(symbolic_input())
  version = {
    'jax': jax.__version__,
    'calling_convention_version': exported.calling_convention_version,
    'platforms': list(exported.platforms),
  }
  return bytes(exported.serialize()), version


def _tf_module(
  generator: models.ResnetGenerator,
  params: Any,
  shape: Sequence[Any],
  *,
  polymorphic: bool,
  explicit_conv_transposes: bool = False,
  mode: inference.TestMode | None = None,
) -> Any:
  """A tf.Module whose `serve` maps {INPUT_NAME: images} to {OUTPUT_NAME: images}.

  The parameters are the module's tf.Variables (stored once, in `variables/`), not
  constants inside the serialized StableHLO.
  """
  tf = console.import_tensorflow()  # Only this format needs TensorFlow.
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top

  if polymorphic:
    kwargs = {
      'polymorphic_shapes': [None, '(batch, height, width, 3)'],
      'polymorphic_constraints': (f'height >= {MIN_SIZE}', f'width >= {MIN_SIZE}'),
      'native_serialization_platforms': PLATFORMS,
    }
  else:  # TFLite: one static shape, lowered for the CPU the converter reads it as.
    kwargs = {'native_serialization_platforms': ('cpu',)}
  converted = jax2tf.convert(
    forward_fn(generator, explicit_conv_transposes=explicit_conv_transposes, mode=mode),
    with_gradient=False,
    **kwargs,
  )
  module = tf.Module()
  module.params = jax.tree.map(
    lambda a: tf.Variable(np.asarray(a, np.float32), trainable=False), params
  )
  module.serve = tf.function(
    lambda images: {OUTPUT_NAME: converted(module.params, images)},
    autograph=False,
    input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)],
  )
  return module


def write_saved_model(
  generator: models.ResnetGenerator,
  params: Any,
  path: str,
  mode: inference.TestMode | None = None,
) -> dict[str, Any]:
  """Writes a SavedModel with signature SIGNATURE (any batch, height and width)."""
  tf = console.import_tensorflow()
  module = _tf_module(
    generator, params, [None, None, None, 3], polymorphic=True, mode=mode
  )
  tf.saved_model.save(
    module, path, signatures={SIGNATURE: module.serve.get_concrete_function()}
  )
  return {
    'tensorflow': tf.__version__,
    'jax': jax.__version__,
    'signature': SIGNATURE,
    'platforms': list(PLATFORMS),
  }


def tflite_bytes(
  generator: models.ResnetGenerator,
  params: Any,
  size: tuple[int, int],
  mode: inference.TestMode | None = None,
) -> tuple[bytes, dict[str, Any]]:
  """A TFLite flatbuffer for [1, H, W, 3] inputs.

  The LiteRT converter takes jax2tf's StableHLO only with static shapes, and it
  mistranslates the transposed convs' input-dilated convolution (outputs off by ~0.2),
  so those are lowered by their definition (`_explicit_conv_transpose`): the same
  arithmetic, as ops it converts correctly.
  """
  tf = console.import_tensorflow()
  module = _tf_module(
    generator,
    params,
    [1, *size, 3],
    polymorphic=False,
    explicit_conv_transposes=True,
    mode=mode,
  )
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
    [module.serve.get_concrete_function()], module
  )
  return bytes(converter.convert()), {
    'tensorflow': tf.__version__,
    'signature': SIGNATURE,
  }


def onnx_bytes(
  generator: models.ResnetGenerator, params: Any, metadata: dict[str, Any]
) -> tuple[bytes, dict[str, Any]]:
  """The ONNX model (dynamic batch, height, width), `metadata` in its metadata_props."""
  import onnx  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.deploy import onnx_graph  # pylint: disable=g-import-not-at-top

  # The graph is written from the parameters (see onnx_graph) and the layout.
  version = {
    'onnx': onnx.__version__,
    'opset': onnx_graph.OPSET,
    'ir_version': onnx_graph.IR_VERSION,
  }
  props = {'cyclegan_jax': json.dumps({**metadata, 'format_version': version})}
  model = onnx_graph.generator_graph(
    params,
    input_name=INPUT_NAME,
    output_name=OUTPUT_NAME,
    metadata=props,
    doc='CycleGAN generator: float32 NHWC RGB in [-1, 1] in and out.',
    upsample=generator.upsample,
    downsample=generator.downsample,
    head=generator.head,
  )
  return model.SerializeToString(), version


# --- The command ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Request:
  """One export, as the command line gives it."""

  workdir: str
  direction: str
  format: str
  output: str
  step: int | None = None
  size: tuple[int, int] | None = None
  overwrite: bool = False
  weights: str = 'auto'  # inference.restore's: the weight average where the run kept one.
  # Batch norm / dropout generators: running statistics, no dropout (official --eval);
  # False: each image's own statistics and seeded dropout (its test.py default).
  model_eval: bool = False


def parse_size(text: str | None) -> tuple[int, int] | None:
  """'H,W' (or 'S' for S×S) -> (H, W); None stays None (the --size flag's parser)."""
  if text is None:
    return None
  try:
    return cli_flags.parse_size(text, MIN_SIZE)
  except ValueError as e:
    raise ExportError(f'--size {e}.') from None


def metadata_path(output: str) -> str:
  """Where the JSON next to an artifact goes."""
  return os.path.normpath(output) + '.json'


def _check_request(request: Request) -> None:
  if request.format not in FORMATS:
    raise ExportError(
      f'unknown --format {request.format!r}; valid formats: {", ".join(FORMATS)}.'
    )
  if request.direction not in inference.DIRECTIONS:
    raise ExportError(f'--direction must be AtoB or BtoA, got {request.direction!r}.')
  if request.size is not None and request.format != 'tflite':
    raise ExportError(
      f'--size is for --format=tflite only; {request.format} artifacts '
      'take any height and width.'
    )
  output = os.path.normpath(request.output)
  for path in (output, metadata_path(output)):
    if os.path.lexists(path) and not request.overwrite:
      raise ExportError(
        f'{path} exists; pass --overwrite to replace it, or choose another --output.'
      )
  if os.path.isdir(output) and not os.path.exists(os.path.join(output, 'saved_model.pb')):
    raise ExportError(
      f'{output} is a folder that is not a SavedModel; not replacing it. '
      'Choose another --output.'
    )
  if os.path.isdir(metadata_path(output)):
    raise ExportError(f'{metadata_path(output)} is a folder; choose another --output.')


def _checkpoint_config(workdir: str, step: int) -> dict[str, Any]:
  """The config saved with a checkpoint (its `config` item)."""
  manager = checkpoints.create_manager(workdir, create=False)
  try:
    restored = manager.restore(
      step, args=ocp.args.Composite(config=ocp.args.JsonRestore())
    )
  finally:
    manager.close()
  return dict(restored['config'] or {})


def _replace(staged: str, output: str) -> None:
  """Moves `staged` to `output`, removing what was there only once the new one is in."""
  if not os.path.lexists(output):
    os.replace(staged, output)
    return
  old = tempfile.mkdtemp(prefix='.old-', dir=os.path.dirname(output))
  moved = os.path.join(old, 'artifact')
  os.replace(output, moved)
  os.replace(staged, output)
  if os.path.isdir(moved) and not os.path.islink(moved):
    shutil.rmtree(old)
  else:
    os.remove(moved)
    os.rmdir(old)


def export(
  request: Request, *, on_stage: Callable[[], None] = lambda: None
) -> dict[str, Any]:
  """Writes the artifact and its JSON; returns the JSON's content.

  `on_stage` is called after each of its three stages (the generator restored, the
  artifact built, both files in place), for a progress bar.

  Raises:
    ExportError: a bad request (unknown format, existing output, missing direction, ...).
    FileNotFoundError: no checkpoint, or no such step.
    inference.ArchitectureMismatchError: the parameters do not fit the saved config.
  """
  _check_request(request)
  # Before the checkpoint is read: a bad --output costs nothing.
  cli_flags.check_output(request.output, 'path', '--output')
  # Every generator, so that a missing one is reported next to what the checkpoint holds.
  restored = inference.restore(request.workdir, request.step, weights=request.weights)
  try:
    name = restored.method.generator_for(request.direction)
  except ValueError as e:
    raise ExportError(str(e)) from None
  if restored.method.translate_fn is not None:
    raise ExportError(
      f'A {restored.method.name} model translates by optimising its latent code per '
      'image (a loop of gradient steps), not with one network, so there is no '
      'generator to export: use translate.'
    )
  if name not in restored.params:
    raise ExportError(
      inference.missing_generator_message(restored, name, request.direction).replace(
        'translate the other way', 'export the other direction'
      )
    )
  in_channels = restored.input_channels(name)
  generator = restored.generator_for(name)
  if (in_channels, generator.output_channels) != (3, 3):
    # The formats' signatures, the ONNX graph and the metadata are written for RGB.
    raise ExportError(
      f'{name} maps {in_channels}-channel to {generator.output_channels}-channel '
      f'images (model.input_nc={restored.model_config.get("input_nc", 3)}, '
      f'model.output_nc={restored.model_config.get("output_nc", 3)}); export handles '
      'RGB → RGB generators only: use translate, or torch_weights-style inference.'
    )
  params = jax.device_get(restored.params[name])
  stats = jax.device_get(restored.stats_for(name))
  mode = test_mode_of(generator, stats, request.model_eval)
  check_format(request.format, generator, mode)
  weights = params if mode is None else {'params': params, 'batch_stats': stats}
  on_stage()
  model = {k: restored.model_config[k] for k in ('netG', 'ngf', 'dtype')}
  metadata: dict[str, Any] = {
    'format': request.format,
    'artifact': os.path.basename(os.path.normpath(request.output)),
    'direction': request.direction,
    'generator': name,
    'step': int(restored.step),
    'workdir': inference.display_path(request.workdir),
    'weights': restored.weights,
    'model': {
      **model,
      **(
        {'num_downs': generator.num_downs}
        if hasattr(generator, 'num_downs')
        else {
          'num_blocks': generator.num_blocks,
          **spec.generator_layout(restored.model_config),
        }
      ),
    },
    **({'test_mode': mode.describe()} if mode is not None else {}),
    'computes': 'the plain float32 network (trained dtype: '
    f'{model["dtype"]}; conv_impl xla)',
    'io': dict(IO_CONVENTION),
  }
  if request.format == 'tflite':
    size = request.size
    if size is None:
      crop = int(_checkpoint_config(request.workdir, restored.step).get('crop_size', 256))
      size = (crop, crop)
    metadata['io']['shape'] = [1, size[0], size[1], 3]
  else:
    metadata['io']['shape'] = ['batch', 'height', 'width', 3]
    metadata['io']['min_height_width'] = MIN_SIZE

  output = os.path.normpath(request.output)
  parent = os.path.dirname(os.path.abspath(output))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(prefix='.export-', dir=parent)
  try:
    staged = os.path.join(staging, 'artifact')
    if request.format == 'saved_model':
      version = write_saved_model(generator, weights, staged, mode)
    else:
      if request.format == 'stablehlo':
        data, version = stablehlo_bytes(generator, weights, mode)
      elif request.format == 'tflite':
        data, version = tflite_bytes(generator, weights, size, mode)
      else:
        data, version = onnx_bytes(generator, params, metadata)
      with open(staged, 'wb') as f:
        f.write(data)
    metadata['format_version'] = version
    on_stage()
    with open(os.path.join(staging, 'meta'), 'w') as f:
      json.dump(metadata, f, indent=2)
      f.write('\n')
    _replace(staged, output)
    _replace(os.path.join(staging, 'meta'), metadata_path(output))
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  on_stage()
  logging.debug('Wrote %s and %s.', output, metadata_path(output))
  return metadata


def check_format(fmt: str, generator: Any, mode: inference.TestMode | None) -> None:
  """Raises ExportError (one line naming the format and why) for a generator the
  format cannot carry."""
  if mode is not None and fmt == 'onnx':
    raise ExportError(
      'onnx: the ONNX writer (deploy/onnx_graph.py) knows the ResNet generator only, '
      f'not this {type(generator).__name__}; export it as stablehlo, saved_model or '
      'tflite.'
    )
  dropout = bool(getattr(generator, 'use_dropout', False))
  if fmt == 'tflite' and mode is not None and not mode.model_eval and dropout:
    raise ExportError(
      'tflite: the default test mode draws dropout masks at run time by unsigned 32-bit '
      "hashing, which LiteRT's converter cannot lower; export with --eval (running "
      'statistics, no dropout), or as stablehlo or saved_model.'
    )


def artifact_size(path: str) -> int:
  """Bytes of a file, or of all files under a folder (a SavedModel)."""
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(
    os.path.getsize(os.path.join(root, f))
    for root, _, files in os.walk(path)
    for f in files
  )


def load_artifact(fmt: str, path: str) -> Callable[[np.ndarray], np.ndarray]:
  """An exported artifact in its own runtime, as a function of a float32 NHWC batch.

  The runtimes (TensorFlow, LiteRT, ONNX Runtime) are imported here, only when asked
  for: an ImportError names the one that is missing.
  """
  if fmt == 'stablehlo':
    with open(path, 'rb') as f:
      call = jax.export.deserialize(f.read()).call
    return lambda x: np.asarray(call(x))
  if fmt == 'saved_model':
    tf = console.import_tensorflow()
    serve = tf.saved_model.load(path).signatures[SIGNATURE]
    return lambda x: serve(**{INPUT_NAME: tf.constant(x)})[OUTPUT_NAME].numpy()
  if fmt == 'tflite':
    from ai_edge_litert import interpreter  # pylint: disable=g-import-not-at-top

    runner = interpreter.Interpreter(model_path=path).get_signature_runner(SIGNATURE)
    return lambda x: runner(**{INPUT_NAME: x})[OUTPUT_NAME]
  import onnxruntime  # pylint: disable=g-import-not-at-top

  session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
  return lambda x: session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def run(request: Request) -> dict[str, Any]:
  """Exports, or exits with a one-line message; returns the metadata written."""
  with errors.one_line('export'):
    return export_command(request).data['metadata']


def export_command(request: Request) -> app.Outcome:
  """The command's work; raises user errors for the one handler."""
  bar = console.ProgressBar(3, 'export', unit='stages')
  try:
    metadata = export(request, on_stage=bar.advance)
  finally:
    bar.close()
  size = artifact_size(request.output)
  return app.Outcome(
    f'Wrote {request.output} ({request.format}, {size / 2**20:.1f} MiB, '
    f'{request.direction}, step {metadata["step"]}) and '
    f'{metadata_path(request.output)}.',
    {
      'command': 'export',
      'output': request.output,
      'metadata_file': metadata_path(request.output),
      'format': request.format,
      'direction': request.direction,
      'step': metadata['step'],
      'bytes': size,
      'metadata': metadata,
    },
  )


def define_flags() -> None:
  """The command's flags (defined by its entry point only, never at import)."""
  cli_flags.define_workdir('Training workdir or converted weights.')
  cli_flags.define_step()
  cli_flags.define_direction('AtoB exports the A→B generator; BtoA the B→A one.')
  flags.DEFINE_enum('format', None, list(FORMATS), "The artifact's format.")
  cli_flags.define_output(
    'The artifact: a file, or a folder for saved_model; its JSON goes to OUTPUT.json.',
    kind='path',
  )
  cli_flags.define_size(
    None,
    "tflite only: its fixed input size, N or H,W (default: the checkpoint's crop_size).",
    minimum=MIN_SIZE,
  )
  cli_flags.define_overwrite('Replace an existing output.')
  cli_flags.define_weights(checkpoints.WEIGHTS)
  cli_flags.define_model_eval()
  flags.mark_flags_as_required(['format'])


def main(argv: Sequence[str]) -> app.Outcome:
  app.no_arguments(argv)
  f = flags.FLAGS
  return export_command(
    Request(
      workdir=f.workdir,
      direction=f.direction,
      format=f.format,
      output=f.output,
      step=None if f.step < 0 else f.step,
      size=f.size,
      overwrite=f.overwrite,
      weights=f.weights,
      model_eval=f.eval,
    )
  )


def cli() -> None:
  """`cyclegan-jax-export` and `python -m cyclegan_jax.deploy.export`."""
  app.run(main, prog='export', define_flags=define_flags)


if __name__ == '__main__':
  cli()
