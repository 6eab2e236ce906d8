"""Random VGG-16 weights in torchvision's key layout (numpy only, seeded per key).

tests/data/make_vgg_fixture.py (torch) and the tests (cyclegan_jax.nets.vgg) build the
same weights from this recipe, so no 21 MB file is committed.
"""

from __future__ import annotations

import numpy as np

SEED = 23
# torchvision's `vgg16().features` up to conv4_2: (index, in channels, out channels),
# written out apart from cyclegan_jax.nets.vgg so that a slip there shows here.
CONVS = (
  (0, 3, 64),
  (2, 64, 64),
  (5, 64, 128),
  (7, 128, 128),
  (10, 128, 256),
  (12, 256, 256),
  (14, 256, 256),
  (17, 256, 512),
  (19, 512, 512),
)


def conv_shapes() -> dict[str, tuple[int, ...]]:
  """{key: shape} of the convs up to relu4_2, in `features` order."""
  shapes = {}
  for index, in_channels, out_channels in CONVS:
    shapes[f'features.{index}.weight'] = (out_channels, in_channels, 3, 3)
    shapes[f'features.{index}.bias'] = (out_channels,)
  return shapes


def random_tensor(key: str, shape: tuple[int, ...]) -> np.ndarray:
  """He-scaled weights and small biases: activations stay O(1) through the layers."""
  rng = np.random.default_rng([SEED, *key.encode()])
  if key.endswith('.weight') and len(shape) == 4:
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
  return (rng.standard_normal(shape) * 0.05).astype(np.float32)


def random_state_dict(extra: dict[str, tuple[int, ...]] | None = None):
  """The convs' random weights (plus `extra` keys, e.g. a classifier to be ignored)."""
  shapes = {**conv_shapes(), **(extra or {})}
  return {k: random_tensor(k, s) for k, s in shapes.items()}


def fixture_input() -> np.ndarray:
  """[2, 24, 40, 3] images in [-1, 1] (not square, so H and W cannot be swapped)."""
  rng = np.random.default_rng(5)
  return rng.uniform(-1, 1, (2, 24, 40, 3)).astype(np.float32)
