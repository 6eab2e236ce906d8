"""CoGAN's coupled networks (Liu and Tuzel 2016): DCGAN-style, weights tied by sharing.

The generator maps one noise vector z to an image of each domain: its early layers
are ONE module (`shared`) whose output feeds two heads (`head_A`, `head_B`), so the
tied weights are a single set of parameters, not two copies kept equal. The critic
mirrors it: each domain has its own first layers, the later ones are one module that
judges both domains' features.

The layer sizes follow the 128 px CelebA GAN of the public CoGAN code (the Caffe
`celeba.train.ptt`): z -> a fully connected layer to 4×4, transposed 4×4 stride-2
convolutions that double the side and halve the filters down to `ngf`, then a 3×3
convolution to the image and tanh; the critic strided 5×5 (first three) and 3×3
convolutions from `ndf` filters, doubling, down to 2×2, a fully connected layer of
64·ndf units and one logit. Batch norm (without a scale, as Caffe's BatchNorm + Bias)
and per-channel PReLU follow every hidden layer. The side is any power of two >= 8:
the layer list grows by one stage per doubling (`generator_layers`, `critic_layers`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# N(0, 0.02) weights: the public code's `gaussian std: 0.02` fillers (biases start at 0).
_INIT = nn.initializers.normal(0.02)
BOTTOM = 4  # The generator's first feature map side (and the critic ends at half it).


@dataclasses.dataclass(frozen=True)
class Layer:
  """One layer of a coupled network: its kind, filters (or units) and kernel.

  kind: 'fc' (fully connected; for the generator's first layer it outputs a 4×4 map),
  'up' (transposed conv, ×2), 'down' (strided conv, /2), 'out' (the generator's
  3×3 image conv or the critic's logit).
  """

  kind: str
  features: int
  kernel: int = 0


def num_doublings(size: int) -> int:
  """Stride-2 stages between 4×4 and `size`; raises ValueError unless a power of 2 >= 8."""
  if size < 2 * BOTTOM or size & (size - 1):
    raise ValueError(
      f'CoGAN networks need a power-of-two side >= 8, got {size}: pass '
      f'--config.crop_size={max(8, 2 ** round(math.log2(max(size, 1))))}.'
    )
  return int(math.log2(size // BOTTOM))


def generator_layers(size: int, ngf: int, max_filters: int) -> tuple[Layer, ...]:
  """The generator from z to a `size`² image: fc to 4×4, the 'up' stages, 'out'."""
  ups = num_doublings(size)
  width = lambda i: min(max_filters, ngf * 2 ** (ups - i))  # Filters at 4·2^i px.
  layers = [Layer('fc', width(0))]
  layers += [Layer('up', width(i), 4) for i in range(1, ups + 1)]
  return tuple(layers + [Layer('out', 0, 3)])


def critic_layers(size: int, ndf: int, max_filters: int) -> tuple[Layer, ...]:
  """The critic from a `size`² image to one logit: 'down' stages to 2×2, fc, 'out'."""
  downs = num_doublings(size) + 1
  layers = [
    Layer('down', min(max_filters, ndf * 2**i), 5 if i < 3 else 3) for i in range(downs)
  ]
  return tuple(layers + [Layer('fc', 64 * ndf), Layer('out', 1)])


class PReLU(nn.Module):
  """Per-channel PReLU with slopes from 0.25 (Caffe's and PyTorch's default)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    slope = self.param('slope', nn.initializers.constant(0.25), (x.shape[-1],))
    return jnp.where(x >= 0, x, slope.astype(x.dtype) * x)


class LayerStack(nn.Module):
  """Layers `first`.. of `layers` in order (each hidden one: op, batch norm, PReLU).

  Submodules are named by the layer's index in the whole network (`layer_3`), so a
  parameter says which layer it is wherever the split between tied and own lies.
  """

  layers: tuple[Layer, ...]
  first: int = 0
  image_channels: int = 3  # The generator's 'out' layer writes this many.
  axis_name: str | None = None  # Batch statistics over devices (sync batch norm).
  dtype: str = 'float32'

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool = False) -> jax.Array:
    for offset, layer in enumerate(self.layers):
      i = self.first + offset
      x = self._op(layer, x, f'layer_{i}')
      if layer.kind == 'out':
        return jnp.tanh(x) if layer.kernel else x[:, 0]
      x = nn.BatchNorm(
        use_running_average=use_running_average,
        use_scale=False,
        momentum=0.9,
        epsilon=1e-5,
        axis_name=self.axis_name,
        dtype=self.dtype,
        name=f'layer_{i}_bn',
      )(x)
      x = PReLU(name=f'layer_{i}_prelu')(x)
    return x

  def _op(self, layer: Layer, x: jax.Array, name: str) -> jax.Array:
    # A layer before batch norm has no bias: the norm's own bias (Caffe's Bias layer)
    # is the one that acts, and a second would only drift on float noise under Adam.
    kw = dict(
      kernel_init=_INIT, use_bias=layer.kind == 'out', dtype=self.dtype, name=name
    )
    k = layer.kernel
    if layer.kind == 'fc' and x.ndim == 2:  # The generator's first: z -> a 4×4 map.
      y = nn.Dense(BOTTOM * BOTTOM * layer.features, **kw)(x)
      return y.reshape((x.shape[0], BOTTOM, BOTTOM, layer.features))
    if layer.kind == 'up':
      return nn.ConvTranspose(layer.features, (k, k), (2, 2), padding='SAME', **kw)(x)
    if layer.kind == 'down':
      return nn.Conv(layer.features, (k, k), (2, 2), padding=k // 2, **kw)(x)
    if layer.kind == 'out' and k:  # The generator's image layer: 3×3, stride 1.
      return nn.Conv(self.image_channels, (k, k), padding=k // 2, **kw)(x)
    # The critic's fully connected layers: its hidden 'fc' and the logit.
    return nn.Dense(layer.features, **kw)(x.reshape((x.shape[0], -1)))


def split(layers: Sequence[Layer], unshared: int, tied_first: bool) -> int:
  """Where the tied layers end ('tied_first': the generator's) or begin (the critic's).

  Raises:
    ValueError: `unshared` leaves no tied layer or no own layer (one line).
  """
  if not 1 <= unshared < len(layers):
    who = 'generator' if tied_first else 'critic'
    raise ValueError(
      f'The {who} has {len(layers)} layers at this size; its own (untied) layers per '
      f'domain must be 1..{len(layers) - 1}, got {unshared}.'
    )
  return len(layers) - unshared if tied_first else unshared


class CoupledGenerator(nn.Module):
  """z [N, nz] -> (image A, image B), each [N, size, size, channels of its domain].

  `shared` holds the tied early layers, `head_A` / `head_B` each domain's own last
  `unshared` layers. `domain='A'` or 'B' renders that domain only.
  """

  size: int
  nz: int
  ngf: int = 32
  max_filters: int = 1024
  unshared: int = 1
  channels: tuple[int, int] = (3, 3)  # Of domain A's and domain B's images.
  axis_name: str | None = None
  dtype: str = 'float32'

  @property
  def output_channels(self) -> int:
    return self.channels[1]

  def layers(self) -> tuple[Layer, ...]:
    return generator_layers(self.size, self.ngf, self.max_filters)

  def example_input(self) -> jax.Array:
    """What `init` reads: one noise vector (the generator reads no image)."""
    return jnp.zeros((1, self.nz), jnp.float32)

  def setup(self):
    layers = self.layers()
    cut = split(layers, self.unshared, tied_first=True)
    common = dict(axis_name=self.axis_name, dtype=self.dtype)
    self.shared = LayerStack(layers[:cut], **common)
    self.head_A = LayerStack(
      layers[cut:], first=cut, image_channels=self.channels[0], **common
    )
    self.head_B = LayerStack(
      layers[cut:], first=cut, image_channels=self.channels[1], **common
    )

  def __call__(
    self, z: jax.Array, use_running_average: bool = False, domain: str | None = None
  ):
    h = self.shared(z, use_running_average)
    if domain == 'A':
      return self.head_A(h, use_running_average)
    if domain == 'B':
      return self.head_B(h, use_running_average)
    return self.head_A(h, use_running_average), self.head_B(h, use_running_average)


class CoupledCritic(nn.Module):
  """(images A, images B) -> (logits A [N], logits B [N]).

  `head_A` / `head_B` are each domain's own first `unshared` layers; `shared` the
  tied rest, run once on both domains' features stacked on the batch axis (as the
  public PyTorch code does, so its batch norms see both domains' batch).
  """

  size: int
  ndf: int = 32
  max_filters: int = 1024
  unshared: int = 1
  axis_name: str | None = None
  dtype: str = 'float32'

  def layers(self) -> tuple[Layer, ...]:
    return critic_layers(self.size, self.ndf, self.max_filters)

  def setup(self):
    layers = self.layers()
    cut = split(layers, self.unshared, tied_first=False)
    common = dict(axis_name=self.axis_name, dtype=self.dtype)
    self.head_A = LayerStack(layers[:cut], **common)
    self.head_B = LayerStack(layers[:cut], **common)
    self.shared = LayerStack(layers[cut:], first=cut, **common)

  def __call__(
    self, x_a: jax.Array, x_b: jax.Array, use_running_average: bool = False
  ) -> tuple[jax.Array, jax.Array]:
    h = jnp.concatenate(
      [self.head_A(x_a, use_running_average), self.head_B(x_b, use_running_average)]
    )
    logits = self.shared(h, use_running_average).astype(jnp.float32)
    return logits[: x_a.shape[0]], logits[x_a.shape[0] :]
