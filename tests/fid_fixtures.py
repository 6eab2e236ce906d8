"""Random Inception weights in pytorch-fid's key layout, and a .pth writer (no torch).

`random_state_dict` is a seeded numpy recipe that depends only on each key and shape, so
tests/data/fid/make_fixtures.py (which runs pytorch-fid's own network on these weights)
and the tests (which run cyclegan_jax.evaluation.inception on them) build the same weights without
committing a 95 MB file. `write_pth` writes a state dict as `torch.save` does (zip
format, float32 / int64 storages), for torch's own loader and for
`cyclegan_jax.nets.torch_weights.read_state_dict`.
"""

from __future__ import annotations

import struct
import zipfile

import numpy as np

SEED = 19


def random_tensor(key: str, shape: tuple[int, ...]) -> np.ndarray:
  """The value of one state-dict entry: scales that keep the activations O(1)."""
  rng = np.random.default_rng([SEED, *key.encode()])
  if key.endswith('num_batches_tracked'):
    return np.zeros(shape, np.int64)
  if key.endswith('conv.weight'):
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
  if key.endswith('bn.weight'):
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)
  if key.endswith('bn.bias') or key.endswith('bn.running_mean'):
    return (rng.standard_normal(shape) * 0.1).astype(np.float32)
  if key.endswith('bn.running_var'):
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)
  if key == 'fc.weight':
    return (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
  if key == 'fc.bias':
    return (rng.standard_normal(shape) * 0.01).astype(np.float32)
  raise KeyError(f'no recipe for {key!r}')


def random_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
  """{key: random_tensor(key, shape)} in the order of `shapes`."""
  return {k: random_tensor(k, tuple(s)) for k, s in shapes.items()}


# --------------------------------------------------------------------------------------
# A minimal torch.save (zip format): protocol-2 pickle opcodes written by hand.
# --------------------------------------------------------------------------------------

_STORAGE = {
  np.dtype(np.float32): 'FloatStorage',
  np.dtype(np.int64): 'LongStorage',
  np.dtype(np.float16): 'HalfStorage',
  np.dtype(np.float64): 'DoubleStorage',
}


class _Pickle:
  """Emits the opcodes of `torch.save(state_dict)`'s data.pkl."""

  def __init__(self):
    self.out = bytearray(b'\x80\x02')

  def glob(self, module: str, name: str) -> None:
    self.out += b'c' + f'{module}\n{name}\n'.encode()

  def str_(self, s: str) -> None:
    raw = s.encode('utf-8')
    self.out += b'X' + struct.pack('<I', len(raw)) + raw

  def int_(self, n: int) -> None:
    self.out += b'J' + struct.pack('<i', n)

  def tuple_(self, items, emit) -> None:
    self.out += b'('
    for item in items:
      emit(item)
    self.out += b't'


def state_dict_pickle(state_dict: dict[str, np.ndarray]) -> bytes:
  """data.pkl of a state dict whose i-th tensor lives in storage str(i), contiguous."""
  p = _Pickle()
  p.glob('collections', 'OrderedDict')
  p.out += b')R'  # OrderedDict()
  p.out += b'('  # MARK for SETITEMS
  for i, (key, value) in enumerate(state_dict.items()):
    p.str_(key)
    p.glob('torch._utils', '_rebuild_tensor_v2')
    p.out += b'('
    # Persistent id ('storage', torch.<T>Storage, key, 'cpu', numel).
    p.out += b'('
    p.str_('storage')
    p.glob('torch', _STORAGE[value.dtype])
    p.str_(str(i))
    p.str_('cpu')
    p.int_(int(value.size))
    p.out += b't' + b'Q'  # TUPLE, BINPERSID
    p.int_(0)  # offset
    p.tuple_(value.shape, p.int_)
    strides = [int(np.prod(value.shape[d + 1 :])) for d in range(value.ndim)]
    p.tuple_(strides, p.int_)
    p.out += b'\x89'  # requires_grad False
    p.glob('collections', 'OrderedDict')
    p.out += b')R'  # backward hooks
    p.out += b't' + b'R'  # args TUPLE, REDUCE
  p.out += b'u.'  # SETITEMS, STOP
  return bytes(p.out)


def write_pth(path: str, state_dict: dict[str, np.ndarray]) -> None:
  """Writes `state_dict` as `torch.save` (zip format, little-endian) would."""
  state_dict = {k: np.ascontiguousarray(v) for k, v in state_dict.items()}
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
    z.writestr('archive/data.pkl', state_dict_pickle(state_dict))
    z.writestr('archive/byteorder', 'little')
    for i, value in enumerate(state_dict.values()):
      little = value.astype(value.dtype.newbyteorder('<'))
      z.writestr(f'archive/data/{i}', little.tobytes())
    z.writestr('archive/version', '3\n')
