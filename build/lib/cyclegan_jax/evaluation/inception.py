"""The FID Inception network: pytorch-fid 0.3.0's InceptionV3, in Flax, NHWC.

pytorch-fid ports the 2015-12-05 TensorFlow Inception graph that FID was defined with:
torchvision's InceptionV3 with 1008 classes, no auxiliary head, and FID-specific blocks
(`FIDInceptionA/C/E_1` average-pool without counting the padding, `FIDInceptionE_2`
max-pools in its pool branch). FID uses the 2048-d output of the final average pool
("pool3"). Its input handling is reproduced exactly:

* images in [0, 1] (PIL `convert('RGB')` + `ToTensor`, i.e. uint8 / 255);
* a bilinear resize to 299 x 299 as `F.interpolate(x, size=(299, 299), mode='bilinear',
  align_corners=False)` computes it (no antialiasing, also when shrinking);
* scaling to [-1, 1] with `2 * x - 1`.

The resize runs on the host (`resize_to_299`, a separable matrix product per image), so
images of any size share one compiled network of fixed input shape; the network runs on
device in batches, data-parallel over all local devices (`FeatureExtractor`).

Weights: pytorch-fid's release file `pt_inception-2015-12-05-6726825d.pth`, read without
torch by `cyclegan_jax.nets.torch_weights.read_state_dict` (`load_weights`).
"""

from __future__ import annotations

import functools
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from cyclegan_jax.nets import torch_weights

PyTree = Any
SIZE = 299
FEATURES = 2048
NUM_CLASSES = 1008
WEIGHTS_FILE = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_URL = (
  'https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/' + WEIGHTS_FILE
)
WEIGHTS_ENV = 'CYCLEGAN_JAX_INCEPTION_WEIGHTS'
BATCH_SIZE = 50  # pytorch-fid's default.
_AXIS = 'data'
_BN_EPS = 1e-3  # torchvision's BasicConv2d.


# --------------------------------------------------------------------------------------
# The network.
# --------------------------------------------------------------------------------------


class BasicConv2d(nn.Module):
  """torchvision's BasicConv2d: conv without bias, batch norm (eps 1e-3), ReLU."""

  features: int
  kernel: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (0, 0)
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.Conv(
      self.features,
      self.kernel,
      self.strides,
      padding=[(p, p) for p in self.padding],
      use_bias=False,
      precision=self.precision,
      name='conv',
    )(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=_BN_EPS, name='bn')(x)
    return nn.relu(x)


def _avg_pool_3x3(x: jax.Array) -> jax.Array:
  # `F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)` of the FID blocks.
  return nn.avg_pool(
    x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False
  )


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


class FIDInceptionA(nn.Module):
  """torchvision's InceptionA with pytorch-fid's pool (padding not counted)."""

  pool_features: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b1 = conv(64, (1, 1), name='branch1x1')(x)
    b5 = conv(48, (1, 1), name='branch5x5_1')(x)
    b5 = conv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = conv(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """torchvision's InceptionB (grid reduction 35 → 17)."""

  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b3 = conv(384, (3, 3), strides=(2, 2), name='branch3x3')(x)
    bd = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = conv(96, (3, 3), strides=(2, 2), name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class FIDInceptionC(nn.Module):
  """torchvision's InceptionC with pytorch-fid's pool (padding not counted)."""

  channels_7x7: int
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv2d, precision=self.precision)
    c7 = self.channels_7x7
    b1 = conv(192, (1, 1), name='branch1x1')(x)
    b7 = conv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = conv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = conv(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = conv(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = conv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = conv(192, (1, 1), name='branch_pool')(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """torchvision's InceptionD (grid reduction 17 → 8)."""

  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b3 = conv(192, (1, 1), name='branch3x3_1')(x)
    b3 = conv(320, (3, 3), strides=(2, 2), name='branch3x3_2')(b3)
    b7 = conv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = conv(192, (3, 3), strides=(2, 2), name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class FIDInceptionE(nn.Module):
  """torchvision's InceptionE as pytorch-fid patches it.

  `max_pool=False`: FIDInceptionE_1 (average pool, padding not counted);
  `max_pool=True`: FIDInceptionE_2 (max pool, as the TensorFlow graph has it).
  """

  max_pool: bool
  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b1 = conv(320, (1, 1), name='branch1x1')(x)
    b3 = conv(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate(
      [
        conv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
        conv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3),
      ],
      -1,
    )
    bd = conv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate(
      [
        conv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
        conv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd),
      ],
      -1,
    )
    if self.max_pool:
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool_3x3(x)
    bp = conv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """pytorch-fid's FID InceptionV3 on [N, 299, 299, 3] images in [0, 1].

  Returns the pool3 features [N, 2048], or (features, logits [N, 1008]) with
  `logits=True`. Module names are torchvision's, so parameter paths follow the state
  dict's keys.
  """

  precision: Any = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array, logits: bool = False):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    x = 2.0 * x - 1.0
    x = conv(32, (3, 3), strides=(2, 2), name='Conv2d_1a_3x3')(x)
    x = conv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = conv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = conv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = conv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_3x3_s2(x)
    p = self.precision
    x = FIDInceptionA(32, p, name='Mixed_5b')(x)
    x = FIDInceptionA(64, p, name='Mixed_5c')(x)
    x = FIDInceptionA(64, p, name='Mixed_5d')(x)
    x = InceptionB(p, name='Mixed_6a')(x)
    x = FIDInceptionC(128, p, name='Mixed_6b')(x)
    x = FIDInceptionC(160, p, name='Mixed_6c')(x)
    x = FIDInceptionC(160, p, name='Mixed_6d')(x)
    x = FIDInceptionC(192, p, name='Mixed_6e')(x)
    x = InceptionD(p, name='Mixed_7a')(x)
    x = FIDInceptionE(False, p, name='Mixed_7b')(x)
    x = FIDInceptionE(True, p, name='Mixed_7c')(x)
    features = jnp.mean(x, axis=(1, 2))
    if not logits:
      return features
    # Declared only when asked for, so a feature-only apply needs no fc weights.
    return features, nn.Dense(NUM_CLASSES, precision=p, name='fc')(features)


# --------------------------------------------------------------------------------------
# Weights.
# --------------------------------------------------------------------------------------


def variable_shapes() -> PyTree:
  """{'params', 'batch_stats'} of `InceptionV3` (fc included), as ShapeDtypeStructs."""
  x = jax.ShapeDtypeStruct((1, SIZE, SIZE, 3), jnp.float32)
  init = lambda v: InceptionV3().init(jax.random.key(0), v, logits=True)
  return jax.eval_shape(init, x)


def _torch_layout(shapes: PyTree) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """{state-dict key: (Flax variable path, torch shape)} for every variable."""
  names = {
    ('params', 'kernel'): 'weight',
    ('params', 'scale'): 'weight',
    ('params', 'bias'): 'bias',
    ('batch_stats', 'mean'): 'running_mean',
    ('batch_stats', 'var'): 'running_var',
  }
  layout = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
    keys = tuple(k.key for k in path)
    collection, modules, leaf_name = keys[0], keys[1:-1], keys[-1]
    shape = tuple(leaf.shape)
    if leaf_name == 'kernel':
      # Conv HWIO ← OIHW; Dense (in, out) ← (out, in).
      shape = shape[::-1] if len(shape) == 2 else (shape[3], shape[2], shape[0], shape[1])
    layout['.'.join(modules + (names[(collection, leaf_name)],))] = (keys, shape)
  return layout


def variables_from_state_dict(state_dict: dict[str, np.ndarray]) -> PyTree:
  """Converts pytorch-fid's Inception state dict to `InceptionV3` variables.

  Args:
    state_dict: {key: array} as `torch_weights.read_state_dict` returns it; batch-norm
      `num_batches_tracked` counters and a DataParallel `module.` prefix are ignored.

  Returns:
    {'params': ..., 'batch_stats': ...} float32, fc included.

  Raises:
    torch_weights.WeightsFileError: a key is missing or unexpected, or a shape differs.
  """
  what = 'pytorch-fid Inception'
  sd = {}
  for key, value in state_dict.items():
    key = key[len('module.') :] if key.startswith('module.') else key
    if not key.endswith('.num_batches_tracked'):
      sd[key] = value
  layout = _torch_layout(variable_shapes())
  missing = [k for k in layout if k not in sd]
  unexpected = [k for k in sd if k not in layout]
  if missing:
    raise torch_weights.WeightsFileError(
      f'not a {what} state dict: key {missing[0]!r} is missing'
      + (f' ({len(missing)} missing keys)' if len(missing) > 1 else '')
    )
  if unexpected:
    raise torch_weights.WeightsFileError(
      f'not a {what} state dict: unexpected key {unexpected[0]!r}'
      + (f' ({len(unexpected)} unexpected keys)' if len(unexpected) > 1 else '')
    )
  variables: dict[str, Any] = {}
  for key, (path, shape) in layout.items():
    value = np.asarray(sd[key])
    if value.shape != shape:
      raise torch_weights.WeightsFileError(
        f'not a {what} state dict: {key!r} has shape {value.shape}, expected {shape}'
      )
    value = value.astype(np.float32)
    if value.ndim == 4:
      value = value.transpose(2, 3, 1, 0)
    elif value.ndim == 2:
      value = value.T
    node = variables
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = np.ascontiguousarray(value)
  return variables


def load_weights(path: str | os.PathLike[str]) -> PyTree:
  """Reads pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (or one like it).

  Raises:
    torch_weights.WeightsFileError: unsafe, truncated or not this network; the message
      names the file.
  """
  state_dict = torch_weights.read_state_dict(path)
  try:
    return variables_from_state_dict(state_dict)
  except torch_weights.WeightsFileError as e:
    raise torch_weights.WeightsFileError(f'{os.fspath(path)}: {e}') from None


def weights_path(flag_value: str | None) -> str | None:
  """The weights file: the flag/config value, else $CYCLEGAN_JAX_INCEPTION_WEIGHTS."""
  return flag_value or os.environ.get(WEIGHTS_ENV) or None


def missing_weights_message(what: str) -> str:
  """One line: why `what` was skipped and where to get the file."""
  return (
    f'{what} skipped: no Inception weights given. Download {WEIGHTS_URL} and pass '
    f'its path with --config.eval.inception_weights=PATH (or set {WEIGHTS_ENV}).'
  )


# --------------------------------------------------------------------------------------
# Input handling.
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _interp_weights(
  in_size: int,
  out_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """(i0, i1, w0, w1) of torch's bilinear resize along one axis (align_corners=False).

  Mirrors ATen's `area_pixel_compute_source_index` and `guard_index_and_lambda` in
  float32: source = max(scale * (i + 0.5) - 0.5, 0) with scale = in / out; no
  antialiasing, so shrinking too samples only the two nearest pixels.
  """
  scale = np.float32(in_size) / np.float32(out_size)
  dst = np.arange(out_size, dtype=np.float32)
  src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0))
  i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  w1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
  i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
  return i0, i1, np.float32(1) - w1, w1


def resize_bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
  """float32 [H, W, C] → [height, width, C] as `F.interpolate(mode='bilinear')` does.

  Width first, then height, as ATen's kernel groups the four products.
  """
  x = np.asarray(x, np.float32)
  j0, j1, v0, v1 = _interp_weights(x.shape[1], width)
  cols = x[:, j0] * v0[None, :, None] + x[:, j1] * v1[None, :, None]
  i0, i1, w0, w1 = _interp_weights(x.shape[0], height)
  return cols[i0] * w0[:, None, None] + cols[i1] * w1[:, None, None]


def to_unit(image: np.ndarray) -> np.ndarray:
  """HWC uint8 (or float in [0, 1]) RGB → float32 [0, 1], as `ToTensor` does.

  A 1-channel image (HW or HW1) is repeated to gray RGB, as pytorch-fid's
  `convert('RGB')` reads a grayscale file.
  """
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim == 3 and image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'expected an RGB image [H, W, 3], got shape {image.shape}')
  if image.dtype == np.uint8:
    return image.astype(np.float32) / np.float32(255)
  return image.astype(np.float32)


def resize_to_299(image: np.ndarray) -> np.ndarray:
  """One HWC image → float32 [299, 299, 3] in [0, 1], as pytorch-fid's model input.

  Args:
    image: uint8 (scaled by 1/255) or float in [0, 1], any height and width.
  """
  x = to_unit(image)
  h, w, _ = x.shape
  if (h, w) == (SIZE, SIZE):
    return x
  return resize_bilinear(x, SIZE, SIZE)


# --------------------------------------------------------------------------------------
# Batched, data-parallel features.
# --------------------------------------------------------------------------------------


class InceptionNet:
  """The network on all local devices: weights replicated, batches split between them.

  `batch_size` is rounded up to a multiple of the device count; every batch is padded to
  it, so one compiled program serves every call.
  """

  def __init__(
    self,
    variables: PyTree,
    *,
    batch_size: int = BATCH_SIZE,
    devices: Sequence[jax.Device] | None = None,
    precision: Any = jax.lax.Precision.HIGHEST,
  ):
    devices = list(devices if devices is not None else jax.local_devices())
    mesh = jax.sharding.Mesh(np.array(devices), (_AXIS,))
    self.batch_size = -(-max(1, batch_size) // len(devices)) * len(devices)
    self.data_sharding = NamedSharding(mesh, P(_AXIS))
    replicated = NamedSharding(mesh, P())
    params = {k: v for k, v in variables['params'].items() if k != 'fc'}
    self.variables = jax.device_put(
      {'params': params, 'batch_stats': variables['batch_stats']}, replicated
    )
    self.apply = jax.jit(
      InceptionV3(precision=precision).apply,
      in_shardings=(replicated, self.data_sharding),
      out_shardings=self.data_sharding,
    )

  def __call__(self, batch: np.ndarray) -> jax.Array:
    """[batch_size, 299, 299, 3] in [0, 1] → [batch_size, 2048], dispatched async."""
    return self.apply(self.variables, jax.device_put(batch, self.data_sharding))


class FeatureExtractor:
  """Collects the pool3 features of a stream of images, a batch at a time.

  `add` takes one image (any size); full batches run on device as soon as they fill, while
  the host goes on; `features()` runs the rest and returns [N, 2048] float32 in order.
  """

  def __init__(self, net: InceptionNet):
    self.net = net
    self._pending: list[np.ndarray] = []
    self._outputs: list[tuple[Any, int]] = []

  def add(self, image: np.ndarray) -> None:
    """Queues one HWC RGB image: uint8, or float in [0, 1]."""
    self.add_resized(resize_to_299(image))

  def add_resized(self, image: np.ndarray) -> None:
    """Queues one image already passed through `resize_to_299`."""
    self._pending.append(image)
    if len(self._pending) == self.net.batch_size:
      self._run()

  def _run(self) -> None:
    n = len(self._pending)
    batch = np.zeros((self.net.batch_size, SIZE, SIZE, 3), np.float32)
    batch[:n] = np.stack(self._pending)
    self._pending = []
    self._outputs.append((self.net(batch), n))
    if len(self._outputs) > 2:  # Keeps one batch in flight, no more on device.
      out, k = self._outputs[-3]
      self._outputs[-3] = (np.asarray(out)[:k], k)

  def features(self) -> np.ndarray:
    """[N, 2048] float32 of every image added so far."""
    if self._pending:
      self._run()
    self._outputs = [(np.asarray(out)[:k], k) for out, k in self._outputs]
    if not self._outputs:
      return np.zeros((0, FEATURES), np.float32)
    return np.concatenate([out for out, _ in self._outputs]).astype(np.float32)
