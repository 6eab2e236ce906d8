"""Import of the official PyTorch CycleGAN weights, without torch.

The official code (junyanz/pytorch-CycleGAN-and-pix2pix) saves each network as
`torch.save(net.state_dict(), 'latest_net_G_A.pth')`. A `.pth` is a pickle, and unpickling
an untrusted pickle runs whatever code it names. So this module reads the format itself:

* the zip format (torch >= 1.6): `<name>/data.pkl` plus one raw record per storage in
  `<name>/data/<key>`;
* the legacy format (older zoo files): five pickles and raw storages in one stream;

with an unpickler that admits only the globals a state dict needs (`OrderedDict`, the
tensor/parameter rebuild functions and the `torch.*Storage` type tags) and builds numpy
arrays itself. Any other global (`os.system`, `builtins.eval`, ...) is refused before
anything in the file runs.

`load_generator` / `load_discriminator` then infer the network's size from the tensor
shapes and convert the layouts to the Flax modules of `cyclegan_jax.nets.models`.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import sys
from typing import Any, BinaryIO, Mapping
import zipfile
import zlib

import jax.numpy as jnp
import ml_dtypes
import numpy as np

from cyclegan_jax.nets import models
from cyclegan_jax.nets import spec
from cyclegan_jax.nets import unet

PyTree = Any
StateDict = dict[str, np.ndarray]


class WeightsFileError(ValueError):
  """A `.pth` file that is unsafe, damaged or not the network it should be."""


# --------------------------------------------------------------------------------------
# Restricted reading of the .pth container.
# --------------------------------------------------------------------------------------

# `torch.<Name>Storage` type tags → numpy dtypes. The tag only says how to read the bytes.
_STORAGE_DTYPES = {
  'FloatStorage': np.dtype(np.float32),
  'DoubleStorage': np.dtype(np.float64),
  'HalfStorage': np.dtype(np.float16),
  'BFloat16Storage': np.dtype(ml_dtypes.bfloat16),
  'LongStorage': np.dtype(np.int64),
  'IntStorage': np.dtype(np.int32),
  'ShortStorage': np.dtype(np.int16),
  'CharStorage': np.dtype(np.int8),
  'ByteStorage': np.dtype(np.uint8),
  'BoolStorage': np.dtype(np.bool_),
}

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


# These records have slots, frozen: a pickle's BUILD opcode cannot rewrite their fields.
@dataclasses.dataclass(frozen=True, slots=True)
class _StorageType:
  """Stands in for a `torch.*Storage` class named in the pickle."""

  name: str
  dtype: np.dtype


@dataclasses.dataclass(frozen=True, slots=True)
class _StorageRef:
  """A storage the pickle refers to; its bytes live outside the pickle."""

  key: str
  dtype: np.dtype
  numel: int


@dataclasses.dataclass(frozen=True, slots=True)
class _TensorRef:
  """A tensor view (offset, size, stride in elements) of a storage, not yet read."""

  storage: _StorageRef
  offset: int
  size: tuple[int, ...]
  stride: tuple[int, ...]


def _rebuild_tensor_v2(
  storage,
  storage_offset,
  size,
  stride,
  requires_grad=False,
  backward_hooks=None,
  metadata=None,
):
  """`torch._utils._rebuild_tensor_v2`, recording the view instead of building it."""
  del requires_grad, backward_hooks, metadata  # Irrelevant for inference weights.
  if not isinstance(storage, _StorageRef):
    raise WeightsFileError('a tensor in the pickle is not backed by a tensor storage')
  try:
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    offset = int(storage_offset)
  except (TypeError, ValueError):
    raise WeightsFileError(
      'a tensor in the pickle has a malformed size or stride'
    ) from None
  if len(size) != len(stride) or offset < 0 or min(size + stride, default=0) < 0:
    raise WeightsFileError(
      f'a tensor in the pickle has an invalid view: size {size}, '
      f'stride {stride}, offset {offset}'
    )
  return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  """`torch._utils._rebuild_parameter`: an `nn.Parameter` is its tensor here."""
  del requires_grad, backward_hooks
  if not isinstance(data, _TensorRef):
    raise WeightsFileError('a parameter in the pickle does not wrap a tensor')
  return data


def _allowed_global(module: str, name: str) -> Any:
  """The only globals a state-dict pickle may name, or None."""
  if (module, name) == ('collections', 'OrderedDict'):
    return collections.OrderedDict
  if (module, name) == ('torch._utils', '_rebuild_tensor_v2'):
    return _rebuild_tensor_v2
  if (module, name) == ('torch._utils', '_rebuild_parameter'):
    return _rebuild_parameter
  if module == 'torch' and name in _STORAGE_DTYPES:
    return _StorageType(name, _STORAGE_DTYPES[name])
  if (module, name) == ('torch.storage', 'UntypedStorage') or (module, name) == (
    'torch',
    'UntypedStorage',
  ):
    return _StorageType(name, np.dtype(np.uint8))
  return None


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickles a state dict; refuses every global it does not need."""

  def __init__(self, file: BinaryIO, path: str):
    super().__init__(file)
    self._path = path
    self.storages: dict[str, _StorageRef] = {}

  def find_class(self, module: str, name: str) -> Any:
    found = _allowed_global(module, name)
    if found is None:
      raise WeightsFileError(
        f'{self._path}: refused to load: the pickle asks for the global '
        f'{module}.{name}, which a PyTorch state dict never needs (it may be '
        'malicious). Only tensors, their storages and OrderedDict are allowed.'
      )
    return found

  def persistent_load(self, pid: Any) -> _StorageRef:
    # Zip format: ('storage', type, key, location, numel); the legacy format adds a
    # sixth field, view metadata, which torch never wrote for state dicts.
    if (
      not isinstance(pid, tuple)
      or len(pid) not in (5, 6)
      or pid[0] != 'storage'
      or not isinstance(pid[1], _StorageType)
      or not isinstance(pid[2], str)
      or not isinstance(pid[4], int)
      or pid[4] < 0
      or (len(pid) == 6 and pid[5] is not None)
    ):
      raise WeightsFileError(
        f'{self._path}: unsupported persistent id in the pickle: {str(pid)[:80]}'
      )
    _, storage_type, key, _, numel = pid[:5]
    ref = self.storages.get(key)
    if ref is None:
      ref = self.storages[key] = _StorageRef(key, storage_type.dtype, numel)
    return ref


def _unpickle(data: BinaryIO, path: str) -> tuple[Any, _RestrictedUnpickler]:
  unpickler = _RestrictedUnpickler(data, path)
  try:
    return unpickler.load(), unpickler
  except WeightsFileError as e:
    if str(e).startswith(path):
      raise
    raise WeightsFileError(f'{path}: {e}') from None
  except Exception as e:  # pylint: disable=broad-except
    # Anything else from the pickle machinery means a damaged file, not a bug here.
    raise WeightsFileError(
      f'{path}: corrupt or truncated pickle ({type(e).__name__}: {e})'
    ) from None


def _materialise(ref: _TensorRef, buffer: bytes, byteorder: str, path: str) -> np.ndarray:
  """Copies one tensor view out of its storage bytes."""
  dtype = ref.storage.dtype
  if len(buffer) // dtype.itemsize < ref.storage.numel:
    raise WeightsFileError(
      f'{path}: storage {ref.storage.key} is truncated '
      f'({len(buffer) // dtype.itemsize} of {ref.storage.numel} '
      'elements)'
    )
  if 0 in ref.size:
    return np.zeros(ref.size, dtype)
  last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
  # A state dict's tensors never overlap themselves; a view with more elements than its
  # storage (stride 0) could only serve to exhaust memory.
  if last >= ref.storage.numel or int(np.prod(ref.size)) > ref.storage.numel:
    raise WeightsFileError(
      f'{path}: a tensor view reaches past the end of storage {ref.storage.key}'
    )
  flat = np.frombuffer(buffer, dtype=dtype, count=ref.storage.numel)
  view = np.lib.stride_tricks.as_strided(
    flat[ref.offset :],
    shape=ref.size,
    strides=tuple(s * dtype.itemsize for s in ref.stride),
    writeable=False,
  )
  array = view.copy(order='C')  # Owns its memory, whatever the strides.
  if byteorder != sys.byteorder and dtype.itemsize > 1:
    array = array.byteswap()
  return array


def _to_state_dict(obj: Any, read_storage, byteorder: str, path: str) -> StateDict:
  """Checks that the unpickled object is a flat dict of tensors and reads them."""
  if not isinstance(obj, dict):
    raise WeightsFileError(
      f'{path}: not a state dict: the pickle holds a '
      f'{type(obj).__name__}, not a dict of tensors'
    )
  buffers: dict[str, bytes] = {}
  state_dict = {}
  for key, value in obj.items():
    if not isinstance(key, str) or not isinstance(value, _TensorRef):
      raise WeightsFileError(
        f'{path}: not a state dict: entry {key!r} is a '
        f'{type(value).__name__}, not a tensor'
      )
    storage_key = value.storage.key
    if storage_key not in buffers:
      buffers[storage_key] = read_storage(value.storage)
    state_dict[key] = _materialise(value, buffers[storage_key], byteorder, path)
  return state_dict


def _read_zip(path: str) -> StateDict:
  try:
    archive = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError, EOFError) as e:
    raise WeightsFileError(
      f'{path}: truncated or corrupt .pth zip archive ({e})'
    ) from None
  with archive:
    pickles = [
      n for n in archive.namelist() if n.endswith('/data.pkl') or n == 'data.pkl'
    ]
    if len(pickles) != 1:
      raise WeightsFileError(
        f'{path}: not a PyTorch zip file (no single data.pkl record)'
      )
    prefix = pickles[0][: -len('data.pkl')]

    def read(name: str) -> bytes:
      try:
        return archive.read(prefix + name)
      except KeyError:
        raise WeightsFileError(f'{path}: record {prefix + name} is missing') from None
      except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
        raise WeightsFileError(
          f'{path}: truncated or corrupt record {prefix + name} ({e})'
        ) from None

    byteorder = 'little'
    if prefix + 'byteorder' in archive.namelist():
      byteorder = read('byteorder').decode('ascii', 'replace').strip()
      if byteorder not in ('little', 'big'):
        raise WeightsFileError(f'{path}: unknown byteorder record {byteorder!r}')
    obj, _ = _unpickle(io.BytesIO(read('data.pkl')), path)
    return _to_state_dict(obj, lambda ref: read(f'data/{ref.key}'), byteorder, path)


def _read_legacy(path: str) -> StateDict:
  """The pre-1.6 stream: magic, protocol, sys_info, object, storage keys, storages."""
  with open(path, 'rb') as f:
    size = os.fstat(f.fileno()).st_size
    magic, _ = _unpickle(f, path)
    if magic != _LEGACY_MAGIC:
      raise WeightsFileError(
        f'{path}: not a PyTorch file (a pickle without the .pth magic number)'
      )
    protocol, _ = _unpickle(f, path)
    if protocol != _LEGACY_PROTOCOL:
      raise WeightsFileError(f'{path}: unsupported legacy .pth protocol {protocol!r}')
    sys_info, _ = _unpickle(f, path)
    little = not isinstance(sys_info, dict) or sys_info.get('little_endian', True)
    obj, unpickler = _unpickle(f, path)
    keys, _ = _unpickle(f, path)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
      raise WeightsFileError(f'{path}: corrupt legacy .pth (bad storage key list)')
    # The storages follow in `keys` order, each an int64 element count and raw bytes.
    raw: dict[str, bytes] = {}
    for key in keys:
      ref = unpickler.storages.get(key)
      header = f.read(8)
      if ref is None or len(header) != 8:
        raise WeightsFileError(
          f'{path}: truncated or corrupt legacy .pth (storage {key})'
        )
      (numel,) = struct.unpack('<q' if little else '>q', header)
      nbytes = numel * ref.dtype.itemsize
      # Checked before reading, so that a forged count cannot ask for terabytes.
      if numel < ref.numel or nbytes > size - f.tell():
        raise WeightsFileError(f'{path}: truncated legacy .pth (storage {key})')
      raw[key] = f.read(nbytes)
  return _to_state_dict(
    obj, lambda ref: raw.get(ref.key, b''), 'little' if little else 'big', path
  )


def read_state_dict(path: str | os.PathLike[str]) -> StateDict:
  """Reads a PyTorch `.pth` state dict into numpy arrays, without running its pickle.

  Args:
    path: a file written by `torch.save(module.state_dict(), path)` (zip or legacy format).

  Returns:
    {key: array} in the file's order, each array a contiguous copy with the tensor's
    shape and dtype (bfloat16 as `ml_dtypes.bfloat16`).

  Raises:
    WeightsFileError: the file is unsafe (names a forbidden global), truncated or
      corrupt, or holds something other than a dict of tensors.
  """
  path = os.fspath(path)
  try:
    with open(path, 'rb') as f:
      head = f.read(4)
  except OSError as e:
    raise WeightsFileError(f'{path}: cannot read ({e.strerror or e})') from None
  if head.startswith(b'PK'):
    return _read_zip(path)
  if head[:1] == b'\x80':  # A pickle PROTO opcode: the legacy format.
    return _read_legacy(path)
  raise WeightsFileError(
    f'{path}: not a PyTorch .pth file (neither a zip archive nor a pickle)'
  )


# --------------------------------------------------------------------------------------
# State dict → Flax parameters.
# --------------------------------------------------------------------------------------

# InstanceNorm buffers that files from old torch versions carry; the official code drops
# them too (`BaseModel.__patch_instance_norm_state_dict`), as InstanceNorm here has none.
_NORM_BUFFERS = ('running_mean', 'running_var', 'num_batches_tracked')


@dataclasses.dataclass(frozen=True)
class GeneratorSpec:
  """A ResnetGenerator's size (and layout), as read from its weights."""

  ngf: int
  num_blocks: int
  input_channels: int
  output_channels: int
  upsample: str = 'transpose'
  downsample: str = 'stride'


@dataclasses.dataclass(frozen=True)
class DiscriminatorSpec:
  """A PatchGAN critic's size, as read from its weights."""

  ndf: int
  num_layers: int
  input_channels: int


def _clean_keys(state_dict: Mapping[str, np.ndarray], what: str) -> StateDict:
  """Strips a DataParallel `module.` prefix and the InstanceNorm buffers of old torch."""
  cleaned = {}
  for key, value in state_dict.items():
    if key.startswith('module.'):
      key = key[len('module.') :]
    if key.rsplit('.', 1)[-1] in _NORM_BUFFERS:
      continue
    cleaned[key] = np.asarray(value)
  if not cleaned:
    raise WeightsFileError(f'the state dict is empty; expected a {what}')
  return cleaned


def _require(state_dict: StateDict, key: str, what: str, ndim: int) -> tuple[int, ...]:
  if key not in state_dict:
    raise WeightsFileError(
      f'not a {what} state dict: key {key!r} is missing (keys: {_abbrev(state_dict)})'
    )
  shape = state_dict[key].shape
  if len(shape) != ndim:
    raise WeightsFileError(
      f'not a {what} state dict: {key!r} has shape {shape}, expected {ndim} dimensions'
    )
  return shape


def _abbrev(state_dict: Mapping[str, Any], n: int = 6) -> str:
  keys = list(state_dict)
  return ', '.join(keys[:n]) + (', ...' if len(keys) > n else '')


def _conv(torch_weight: np.ndarray) -> np.ndarray:
  """Conv2d OIHW → Flax HWIO; also ConvTranspose2d IOHW → (kh, kw, out, in).

  The second is the layout of `nn.ConvTranspose(transpose_kernel=True)` in models.py, which
  flips the kernel and swaps its channel axes itself, as torch's transposed conv does.
  """
  return np.ascontiguousarray(np.transpose(torch_weight, (2, 3, 1, 0)))


# {torch module prefix: (flax path, torch weight shape, bias size)}.
Layout = dict[str, tuple[str, tuple[int, ...], int]]


def _convert(state_dict: StateDict, layout: Layout, what: str) -> PyTree:
  """Checks keys and shapes against `layout` and builds the Flax parameter tree."""
  expected = {}
  for prefix, (_, shape, bias) in layout.items():
    expected[f'{prefix}.weight'] = shape
    expected[f'{prefix}.bias'] = (bias,)
  missing = [k for k in expected if k not in state_dict]
  unexpected = [k for k in state_dict if k not in expected]
  if missing:
    raise WeightsFileError(
      f'not a {what} state dict: key {missing[0]!r} is missing'
      + (f' ({len(missing)} missing keys)' if len(missing) > 1 else '')
    )
  if unexpected:
    raise WeightsFileError(
      f'not a {what} state dict: unexpected key {unexpected[0]!r}'
      + (f' ({len(unexpected)} unexpected keys)' if len(unexpected) > 1 else '')
      + ' (a dropout or batch-norm variant is not supported)'
    )
  for key, shape in expected.items():
    if state_dict[key].shape != shape:
      raise WeightsFileError(
        f'not a {what} state dict: {key!r} has shape '
        f'{state_dict[key].shape}, expected {shape}'
      )
  params: dict[str, Any] = {}
  for prefix, (flax_path, _, _) in layout.items():
    node = params
    for part in flax_path.split('/'):
      node = node.setdefault(part, {})
    node['kernel'] = jnp.asarray(_conv(state_dict[f'{prefix}.weight'].astype(np.float32)))
    node['bias'] = jnp.asarray(state_dict[f'{prefix}.bias'].astype(np.float32))
  return params


def generator_from_state_dict(
  state_dict: Mapping[str, np.ndarray],
) -> tuple[GeneratorSpec, PyTree]:
  """Infers a ResnetGenerator's size from an official state dict and converts it.

  The reference's `nn.Sequential` puts the stem conv at index 1, the downsampling convs
  at 4 and 7, the N residual blocks at 10 .. 9+N (convs at `conv_block.1` and `.5`), the
  transposed convs at 10+N and 13+N and the last conv at 17+N.

  Args:
    state_dict: {key: array} as `read_state_dict` returns it (with or without `module.`).

  Returns:
    (spec, params) with params the Flax parameter tree of `models.ResnetGenerator`.

  Raises:
    WeightsFileError: the keys or shapes are not those of a ResnetGenerator.
  """
  what = 'ResnetGenerator'
  sd = _clean_keys(state_dict, what)
  ngf, in_ch = _require(sd, 'model.1.weight', what, 4)[:2]
  num_blocks = 0
  while f'model.{10 + num_blocks}.conv_block.1.weight' in sd:
    num_blocks += 1
  if num_blocks == 0:
    raise WeightsFileError(
      f'not a {what} state dict: no residual block '
      f"('model.10.conv_block.1.weight' is missing)"
    )
  out_ch = _require(sd, f'model.{17 + num_blocks}.weight', what, 4)[0]
  c1, c2, c4 = ngf, 2 * ngf, 4 * ngf
  layout: Layout = {
    'model.1': ('stem', (c1, in_ch, 7, 7), c1),
    'model.4': ('down_0', (c2, c1, 3, 3), c2),
    'model.7': ('down_1', (c4, c2, 3, 3), c4),
  }
  for i in range(num_blocks):
    layout[f'model.{10 + i}.conv_block.1'] = (f'block_{i}/conv_0', (c4, c4, 3, 3), c4)
    layout[f'model.{10 + i}.conv_block.5'] = (f'block_{i}/conv_1', (c4, c4, 3, 3), c4)
  # ConvTranspose2d weights are (in, out, kh, kw).
  layout[f'model.{10 + num_blocks}'] = ('up_0/conv', (c4, c2, 3, 3), c2)
  layout[f'model.{13 + num_blocks}'] = ('up_1/conv', (c2, c1, 3, 3), c1)
  layout[f'model.{17 + num_blocks}'] = ('head', (out_ch, c1, 7, 7), out_ch)
  params = _convert(sd, layout, what)
  return GeneratorSpec(ngf, num_blocks, in_ch, out_ch), params


# The fixed filters of CUT's antialiased layers: buffers, not weights.
_FILTER_BUFFER = 'filt'


def is_antialiased_state_dict(state_dict: Mapping[str, np.ndarray]) -> bool:
  """Whether a ResnetGenerator state dict has CUT's antialiased down- or upsampling
  (their `filt` buffers)."""
  return any(k.rsplit('.', 1)[-1] == _FILTER_BUFFER for k in state_dict)


def _stage_layout(stages: tuple[spec.Stage, ...], in_ch: int) -> tuple[Layout, int]:
  """{torch prefix: (flax path, torch shape, bias)} of a generator's stages, from the
  official layer numbering (`spec.torch_layers`), and the head's layer index."""
  layout: Layout = {}
  channels = in_ch
  head = -1
  for index, (si, point) in enumerate(spec.torch_layers(stages)):
    stage = stages[si]
    if stage.add_input_of is not None:  # A residual block: its two convs.
      block = stage.path[0]
      c = stage.features
      layout[f'model.{index}.conv_block.1'] = (f'{block}/conv_0', (c, c, 3, 3), c)
      layout[f'model.{index}.conv_block.5'] = (f'{block}/conv_1', (c, c, 3, 3), c)
      continue
    if point != 'conv':
      continue
    k, c = stage.kernel, stage.features
    if stage.op == 'conv_transpose':  # (in, out, kh, kw).
      shape = (channels, c, k, k)
    else:
      shape = (c, channels, k, k)
    layout[f'model.{index}'] = ('/'.join(stage.path), shape, c)
    channels = c
    head = index if stage.head else head
  return layout, head


def antialiased_generator_from_state_dict(
  state_dict: Mapping[str, np.ndarray],
) -> tuple[GeneratorSpec, PyTree]:
  """Converts the official CUT ResnetGenerator (antialiased down- and/or upsampling:
  `Downsample` at model.7 and .11, `Upsample` before each up conv).

  The layer numbering follows from the layout (`spec.torch_layers`): with both
  antialiased, the stem conv is model.1, the down convs model.4 and .8, the blocks
  model.12 .. 11+N, the up convs model.13+N and .17+N, the head model.21+N. The
  filters' buffers are checked for their shape and dropped (they are constants).

  Raises:
    WeightsFileError: the keys or shapes are not those of such a generator.
  """
  what = 'CUT ResnetGenerator'
  sd = _clean_keys(state_dict, what)
  ngf, in_ch = _require(sd, 'model.1.weight', what, 4)[:2]
  downsample = 'blur' if f'model.7.{_FILTER_BUFFER}' in sd else 'stride'
  first = 12 if downsample == 'blur' else 10
  num_blocks = 0
  while f'model.{first + num_blocks}.conv_block.1.weight' in sd:
    num_blocks += 1
  if num_blocks == 0:
    raise WeightsFileError(
      f'not a {what} state dict: no residual block '
      f"('model.{first}.conv_block.1.weight' is missing)"
    )
  up_key = f'model.{first + num_blocks}.{_FILTER_BUFFER}'
  upsample = 'blur' if up_key in sd else 'transpose'
  stages = spec.generator_stages(
    ngf, num_blocks, 1, upsample=upsample, downsample=downsample
  )
  layout, head = _stage_layout(stages, in_ch)
  out_ch = _require(sd, f'model.{head}.weight', what, 4)[0]
  stages = spec.generator_stages(
    ngf, num_blocks, out_ch, upsample=upsample, downsample=downsample
  )
  layout, _ = _stage_layout(stages, in_ch)
  layers = spec.torch_layers(stages)
  for key in [k for k in sd if k.rsplit('.', 1)[-1] == _FILTER_BUFFER]:
    size = sd.pop(key).shape[-1]
    index = int(key.split('.')[1]) if key.split('.')[1].isdigit() else len(layers)
    op = stages[layers[index][0]].op if index < len(layers) else None
    if {'blur': 3, 'blur_up': 4}.get(op) != size:
      raise WeightsFileError(f'not a {what} state dict: unexpected buffer {key!r}')
  params = _convert(sd, layout, what)
  spec_ = GeneratorSpec(ngf, num_blocks, in_ch, out_ch, upsample, downsample)
  return spec_, params


def _patchgan_size(sd: dict[str, Any], what: str) -> tuple[int, int, int]:
  """(ndf, input channels, stride-2 stages) of an NLayerDiscriminator state dict: its
  convs sit every third index (conv, norm, LeakyReLU) after the first."""
  ndf, in_ch = _require(sd, 'model.0.weight', what, 4)[:2]
  num_convs = 1
  while f'model.{3 * num_convs - 1}.weight' in sd:
    num_convs += 1
  num_layers = num_convs - 2
  if num_layers < 1:
    raise WeightsFileError(
      f'not a {what} state dict: expected at least 3 convs '
      f"('model.2.weight', 'model.5.weight' ...), found {num_convs}"
    )
  return ndf, in_ch, num_layers


def discriminator_from_state_dict(
  state_dict: Mapping[str, np.ndarray],
) -> tuple[DiscriminatorSpec, PyTree]:
  """Infers a PatchGAN's size from an official NLayerDiscriminator state dict.

  The reference's `nn.Sequential` holds n_layers + 2 convs: the first at index 0 (followed
  by LeakyReLU only), then conv/norm/LeakyReLU triples, so conv j sits at index 3j − 1.

  Args:
    state_dict: {key: array} as `read_state_dict` returns it (with or without `module.`).

  Returns:
    (spec, params) with params the Flax parameter tree of `models.PatchDiscriminator`.

  Raises:
    WeightsFileError: the keys or shapes are not those of an NLayerDiscriminator.
  """
  what = 'PatchGAN (NLayerDiscriminator)'
  sd = _clean_keys(state_dict, what)
  ndf, in_ch, num_layers = _patchgan_size(sd, what)
  layout: Layout = {'model.0': ('conv_0', (ndf, in_ch, 4, 4), ndf)}
  prev = ndf
  for n in range(1, num_layers + 1):
    cur = ndf * min(2**n, 8)
    layout[f'model.{3 * n - 1}'] = (f'conv_{n}', (cur, prev, 4, 4), cur)
    prev = cur
  layout[f'model.{3 * num_layers + 2}'] = (f'conv_{num_layers + 1}', (1, prev, 4, 4), 1)
  params = _convert(sd, layout, what)
  return DiscriminatorSpec(ndf, num_layers, in_ch), params


# --------------------------------------------------------------------------------------
# pix2pix: U-Net generators and critics with batch norm.
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UnetSpec:
  """A UnetGenerator's size and norm, as read from its weights (dropout cannot be: it
  has none)."""

  num_downs: int
  ngf: int
  norm: str  # 'batch' | 'instance'.
  input_channels: int
  output_channels: int

  @property
  def net_g(self) -> str | None:
    """The official netG name (`spec.UNET_DOWNS`), or None."""
    return {v: k for k, v in spec.UNET_DOWNS.items()}.get(self.num_downs)


@dataclasses.dataclass(frozen=True)
class CriticSpec:
  """A pix2pix critic (NLayerDiscriminator or PixelDiscriminator), as read from its
  weights."""

  net_d: str  # 'basic' | 'n_layers' | 'pixel'.
  ndf: int
  num_layers: int  # The PatchGAN's n_layers_D (3 for 'basic'); 0 for 'pixel'.
  norm: str  # 'batch' | 'instance'.
  input_channels: int


@dataclasses.dataclass(frozen=True)
class _Layer:
  """One torch module of a layout: a conv (weight, optional bias) or a BatchNorm2d."""

  prefix: str  # The torch key prefix ('model.model.1.model.2').
  path: str  # The Flax module name ('down_1_norm').
  shape: tuple[int, ...]  # The torch weight's shape.
  bias: bool = True  # Conv only: has a bias.
  batch_norm: bool = False
  transposed: bool = False  # A ConvTranspose2d: weight (in, out, kh, kw).

  def bias_shape(self) -> tuple[int]:
    return (self.shape[1 if self.transposed else 0],)


_BN_STATS = {'running_mean': 'mean', 'running_var': 'var'}


def _strip_module(state_dict: Mapping[str, np.ndarray], what: str) -> StateDict:
  """The state dict without a DataParallel `module.` prefix, as numpy arrays."""
  cleaned = {
    (k[len('module.') :] if k.startswith('module.') else k): np.asarray(v)
    for k, v in state_dict.items()
  }
  if not cleaned:
    raise WeightsFileError(f'the state dict is empty; expected a {what}')
  return cleaned


def _convert_layers(
  state_dict: StateDict, layers: list[_Layer], what: str, hint: str = ''
) -> tuple[PyTree, PyTree]:
  """Checks keys and shapes against `layers`; returns (params, batch_stats) trees.

  A BatchNorm2d's `num_batches_tracked` is optional and ignored. Running-statistics
  buffers anywhere else are InstanceNorm buffers of old torch files, dropped as the
  official code drops them.
  """
  expected: dict[str, tuple[int, ...]] = {}
  bn_prefixes = set()
  for layer in layers:
    if layer.batch_norm:
      bn_prefixes.add(layer.prefix)
      for name in ('weight', 'bias', *_BN_STATS):
        expected[f'{layer.prefix}.{name}'] = layer.shape
    else:
      expected[f'{layer.prefix}.weight'] = layer.shape
      if layer.bias:
        expected[f'{layer.prefix}.bias'] = layer.bias_shape()
  sd = {}
  for key, value in state_dict.items():
    prefix, name = key.rsplit('.', 1) if '.' in key else ('', key)
    if name in _NORM_BUFFERS and (
      prefix not in bn_prefixes or name == 'num_batches_tracked'
    ):
      continue
    sd[key] = value
  missing = [k for k in expected if k not in sd]
  unexpected = [k for k in sd if k not in expected]
  if missing:
    raise WeightsFileError(
      f'not a {what} state dict: key {missing[0]!r} is missing'
      + (f' ({len(missing)} missing keys)' if len(missing) > 1 else '')
      + hint
    )
  if unexpected:
    raise WeightsFileError(
      f'not a {what} state dict: unexpected key {unexpected[0]!r}'
      + (f' ({len(unexpected)} unexpected keys)' if len(unexpected) > 1 else '')
      + hint
    )
  for key, shape in expected.items():
    if sd[key].shape != shape:
      raise WeightsFileError(
        f'not a {what} state dict: {key!r} has shape {sd[key].shape}, expected {shape}'
      )
  params: dict[str, Any] = {}
  stats: dict[str, Any] = {}

  def get(layer: _Layer, name: str) -> jnp.ndarray:
    return jnp.asarray(sd[f'{layer.prefix}.{name}'].astype(np.float32))

  for layer in layers:
    if layer.batch_norm:
      params[layer.path] = {'scale': get(layer, 'weight'), 'bias': get(layer, 'bias')}
      stats[layer.path] = {ours: get(layer, theirs) for theirs, ours in _BN_STATS.items()}
      continue
    node = {'kernel': jnp.asarray(_conv(np.asarray(get(layer, 'weight'))))}
    if layer.bias:
      node['bias'] = get(layer, 'bias')
    params[layer.path] = node
  return params, stats


def _unet_block_prefixes(sd: StateDict, what: str) -> list[str]:
  """The torch prefix of each block's `nn.Sequential`, outermost first.

  The outermost block's sequence is `model.model`, with the next block at index 1; every
  other block's next block sits at index 3 (after LeakyReLU, conv, norm); the innermost
  block is the first without one. Dropout layers come last in a sequence, so they shift
  no index.
  """
  _require(sd, 'model.model.0.weight', what, 4)
  prefixes = ['model.model', 'model.model.1.model']
  _require(sd, f'{prefixes[1]}.1.weight', what, 4)
  while f'{prefixes[-1]}.3.model.1.weight' in sd:
    prefixes.append(f'{prefixes[-1]}.3.model')
    if len(prefixes) > 64:
      raise WeightsFileError(f'not a {what} state dict: its blocks do not end')
  return prefixes


def unet_from_state_dict(
  state_dict: Mapping[str, np.ndarray],
) -> tuple[UnetSpec, PyTree, PyTree]:
  """Infers an official UnetGenerator's depth, ngf and norm from its state dict and
  converts it.

  Returns:
    (spec, params, batch_stats) for `unet.UnetGenerator` (batch_stats {} with instance
    norm), module names `down_{i}`, `down_{i}_norm`, `up_{i}`, `up_{i}_norm`, block
    i = 0 the outermost.

  Raises:
    WeightsFileError: the keys or shapes are not those of a UnetGenerator.
  """
  what = 'UnetGenerator'
  sd = _strip_module(state_dict, what)
  prefixes = _unet_block_prefixes(sd, what)
  n = len(prefixes)
  ngf, in_ch = sd['model.model.0.weight'].shape[:2]
  out_ch = _require(sd, 'model.model.3.weight', what, 4)[1]
  norm = 'batch' if f'{prefixes[1]}.2.weight' in sd else 'instance'
  if n < 5:
    raise WeightsFileError(
      f'not a {what} state dict: {n} blocks, the official U-Nets have at least 5'
    )
  biased = norm == 'instance'
  layers = []
  for i, (outer_in, inner, outer_out) in enumerate(
    unet.block_channels(n, int(ngf), int(in_ch), int(out_ch))
  ):
    p = prefixes[i]
    innermost = i == n - 1
    up_in = inner if innermost else 2 * inner
    if i == 0:
      down, up = f'{p}.0', f'{p}.3'
    elif innermost:
      down, up = f'{p}.1', f'{p}.3'
    else:
      down, up = f'{p}.1', f'{p}.5'
      layers.append(_Layer(f'{p}.2', f'down_{i}_norm', (inner,), batch_norm=True))
    layers.append(_Layer(down, f'down_{i}', (inner, outer_in, 4, 4), biased))
    layers.append(
      _Layer(up, f'up_{i}', (up_in, outer_out, 4, 4), biased or i == 0, transposed=True)
    )
    if i > 0:
      norm_index = 4 if innermost else 6
      layers.append(
        _Layer(f'{p}.{norm_index}', f'up_{i}_norm', (outer_out,), batch_norm=True)
      )
  if norm == 'instance':
    layers = [layer for layer in layers if not layer.batch_norm]
  hint = f' (read as a {n}-block U-Net with {norm} norm, ngf {ngf})'
  params, stats = _convert_layers(sd, layers, what, hint)
  return UnetSpec(n, int(ngf), norm, int(in_ch), int(out_ch)), params, stats


def critic_from_state_dict(
  state_dict: Mapping[str, np.ndarray],
) -> tuple[CriticSpec, PyTree, PyTree]:
  """Infers an official pix2pix critic (`basic` / `n_layers` NLayerDiscriminator or
  `pixel` PixelDiscriminator, batch or instance norm) and converts it.

  The NLayerDiscriminator's sequence holds conv j at index 3j - 1 (its norm at 3j); the
  PixelDiscriminator's (`net.*`) its convs at 0, 2 and 5 and its norm at 3. With batch
  norm the convs before a norm have no bias, and so does the PixelGAN's last conv.

  Returns:
    (spec, params, batch_stats) for `models.PatchDiscriminator` /
    `models.PixelDiscriminator` (batch_stats {} with instance norm).

  Raises:
    WeightsFileError: the keys or shapes are not those of either critic.
  """
  sd = _strip_module(state_dict, 'pix2pix critic')
  if 'net.0.weight' in sd:
    what = 'PixelDiscriminator'
    ndf, in_ch = _require(sd, 'net.0.weight', what, 4)[:2]
    norm = 'batch' if 'net.3.weight' in sd else 'instance'
    biased = norm == 'instance'
    layers = [
      _Layer('net.0', 'conv_0', (ndf, in_ch, 1, 1)),
      _Layer('net.2', 'conv_1', (2 * ndf, ndf, 1, 1), biased),
      _Layer('net.5', 'conv_2', (1, 2 * ndf, 1, 1), biased),
    ]
    if norm == 'batch':
      layers.append(_Layer('net.3', 'norm_1', (2 * ndf,), batch_norm=True))
    params, stats = _convert_layers(sd, layers, what)
    return CriticSpec('pixel', int(ndf), 0, norm, int(in_ch)), params, stats

  what = 'PatchGAN (NLayerDiscriminator)'
  ndf, in_ch, num_layers = _patchgan_size(sd, what)
  norm = 'batch' if 'model.3.weight' in sd else 'instance'
  biased = norm == 'instance'
  layers = [_Layer('model.0', 'conv_0', (ndf, in_ch, 4, 4))]
  prev = ndf
  for n in range(1, num_layers + 1):
    cur = ndf * min(2**n, 8)
    layers.append(_Layer(f'model.{3 * n - 1}', f'conv_{n}', (cur, prev, 4, 4), biased))
    if norm == 'batch':
      layers.append(_Layer(f'model.{3 * n}', f'norm_{n}', (cur,), batch_norm=True))
    prev = cur
  layers.append(
    _Layer(f'model.{3 * num_layers + 2}', f'conv_{num_layers + 1}', (1, prev, 4, 4))
  )
  params, stats = _convert_layers(sd, layers, what)
  net_d = 'basic' if num_layers == 3 else 'n_layers'
  return CriticSpec(net_d, int(ndf), num_layers, norm, int(in_ch)), params, stats


def is_unet_state_dict(state_dict: Mapping[str, np.ndarray]) -> bool:
  """Whether the keys are an official UnetGenerator's (else: maybe a ResNet's)."""
  return any(
    k in state_dict for k in ('model.model.0.weight', 'module.model.model.0.weight')
  )


def read_unet(path: str | os.PathLike[str]) -> tuple[UnetSpec, PyTree, PyTree]:
  """`unet_from_state_dict` of a `.pth` file; errors name the file."""
  state_dict = read_state_dict(path)
  try:
    return unet_from_state_dict(state_dict)
  except WeightsFileError as e:
    raise WeightsFileError(f'{os.fspath(path)}: {e}') from None


def read_critic(path: str | os.PathLike[str]) -> tuple[CriticSpec, PyTree, PyTree]:
  """`critic_from_state_dict` of a `.pth` file; errors name the file."""
  state_dict = read_state_dict(path)
  try:
    return critic_from_state_dict(state_dict)
  except WeightsFileError as e:
    raise WeightsFileError(f'{os.fspath(path)}: {e}') from None


def read_generator(path: str | os.PathLike[str]) -> tuple[GeneratorSpec, PyTree]:
  """`generator_from_state_dict` of a `.pth` file; errors name the file."""
  state_dict = read_state_dict(path)
  try:
    return generator_from_state_dict(state_dict)
  except WeightsFileError as e:
    raise WeightsFileError(f'{os.fspath(path)}: {e}') from None


def read_discriminator(path: str | os.PathLike[str]) -> tuple[DiscriminatorSpec, PyTree]:
  """`discriminator_from_state_dict` of a `.pth` file; errors name the file."""
  state_dict = read_state_dict(path)
  try:
    return discriminator_from_state_dict(state_dict)
  except WeightsFileError as e:
    raise WeightsFileError(f'{os.fspath(path)}: {e}') from None


def load_generator(
  path: str | os.PathLike[str],
  dtype: Any = jnp.float32,
  conv_impl: str = 'xla',
) -> tuple[models.ResnetGenerator, PyTree]:
  """Loads an official generator `.pth` (`latest_net_G_A.pth`, zoo `latest_net_G.pth`).

  Args:
    path: the `.pth` file.
    dtype: compute dtype of the returned module (parameters are float32).
    conv_impl: its conv forms, one of `nets.spec.RESOLVED_CONV_IMPLS`.

  Returns:
    (module, variables), ready for `module.apply(variables, images_nhwc)`.
  """
  spec, params = read_generator(path)
  module = models.ResnetGenerator(
    ngf=spec.ngf,
    num_blocks=spec.num_blocks,
    output_channels=spec.output_channels,
    dtype=dtype,
    conv_impl=conv_impl,
  )
  return module, {'params': params}


def load_discriminator(
  path: str | os.PathLike[str],
  dtype: Any = jnp.float32,
  conv_impl: str = 'xla',
) -> tuple[models.PatchDiscriminator, PyTree]:
  """Loads an official PatchGAN `.pth` (`latest_net_D_A.pth`).

  Args:
    path: the `.pth` file.
    dtype: compute dtype of the returned module (parameters are float32).
    conv_impl: its conv forms, one of `nets.spec.RESOLVED_CONV_IMPLS`.

  Returns:
    (module, variables), ready for `module.apply(variables, images_nhwc)`.
  """
  spec, params = read_discriminator(path)
  module = models.PatchDiscriminator(
    ndf=spec.ndf, num_layers=spec.num_layers, dtype=dtype, conv_impl=conv_impl
  )
  return module, {'params': params}
