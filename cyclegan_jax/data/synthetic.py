"""Built-in generated image domains: no download, and ground truth for every test image.

Each task is a pair of renderers of one *scene* description (a background and a few
objects, each with a position, a size and a colour index). Domain A and domain B draw the
same scene differently, so the true translation of a test image is the same scene drawn in
the other domain, and translation quality can be measured as a number.

Tasks (`config.dataset = 'synthetic:NAME'`):

* `shapes`: A shows smooth solid discs in a warm palette on a light plain background; B
  shows the same objects as squares (the disc's bounding box) filled with vertical
  stripes in another palette, on a dark background. A→B must change colour, shape and
  texture at once; the colour map is a per-object lookup (red→yellow, green→magenta,
  blue→orange), not one matrix for the whole image. Each object's colour is drawn
  uniformly, so unpaired images do not say which colour of B goes with which of A: the
  pairing is not identifiable, and a run learns one of the six.
* `shapes_ranked`: `shapes` with the colours drawn 60 / 30 / 10 % in both domains (red and
  yellow most often, blue and orange least): the pairing is then the one that matches the
  colours' frequencies, so unpaired data does determine it.
* `colors`: the same discs in both domains, only the palettes and the background differ
  (a colour-only sanity task that a small generator learns in a few hundred steps).
* `gray2color`: A is the 1-channel luma of B, which shows `colors`' domain-A discs in
  colour: colourisation, A→B, and its inverse, B→A (the palette's lumas differ, so the
  colour is recoverable). For `model.input_nc=1` (configs/demo_gray.py).
* `color2gray`: the same with the domains swapped (B is the gray one; `model.output_nc=1`).
* `streets`: street scenes, A the photo and B the Cityscapes colour label map
  (`streets.py`): the labels↔photo benchmark of docs/protocol.md.

The train splits of A and B come from *different* random scenes (unpaired, as in CycleGAN);
`testA[i]`'s ground truth is scene `testA[i]` drawn in domain B and vice versa. The
validation splits (`valA`, `valB`: `config.eval.split='val'`) are scenes of their own,
drawn like the test splits, for choosing settings without looking at the test scores. For
`dataset_mode='aligned'` (pix2pix), `load_pairs` draws the scenes of `trainA` / `testA` in
both domains, so B is the true translation of A in every pair. Scenes are a
fixed function of the task and split (not of `config.seed`): the dataset is a dataset.
Images are rendered at any square size (the input pipeline asks for `config.load_size`),
supersampled (4× up to 64 px, 2× above) and box-filtered so that edges are smooth.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib

import numpy as np

from cyclegan_jax.data import channels
from cyclegan_jax.data import streets

TASKS = ('shapes', 'shapes_ranked', 'colors', 'gray2color', 'color2gray', 'streets')
# Tasks drawn by a module of their own rather than from `Scenes` of discs.
_SCENE_MODULES = {'streets': streets}
# The domain drawn as 1-channel luma in the gray tasks (every other domain is RGB).
GRAY_DOMAIN = {'gray2color': 'A', 'color2gray': 'B'}
SPLITS = ('trainA', 'trainB', 'testA', 'testB', 'valA', 'valB')
NUM_TRAIN = 600  # Images per train split (A and B each).
NUM_TEST = 64  # Images per test split (A and B each).
NUM_VAL = 64  # Images per validation split (A and B each): scenes of their own.
MAX_OBJECTS = 3
# Tasks whose domain B draws striped squares; the others draw discs in both domains.
_STRIPED = ('shapes', 'shapes_ranked')
# Colour index frequencies, the same in both domains (default: uniform). Unequal ones make
# the pairing of the two palettes identifiable from unpaired images.
_COLOUR_FREQUENCIES = {'shapes_ranked': (0.6, 0.3, 0.1)}

_SUPERSAMPLE = 4
# Colour index k of an object picks PALETTE_X[k] in domain X.
_PALETTE_A = np.array([[0.90, 0.15, 0.15], [0.15, 0.70, 0.20], [0.15, 0.30, 0.90]])
_PALETTE_B = np.array([[0.95, 0.85, 0.10], [0.85, 0.15, 0.80], [0.95, 0.50, 0.05]])
_BACKGROUND_A = np.array([0.92, 0.90, 0.84])
_BACKGROUND_B = np.array([0.12, 0.14, 0.22])
_STRIPE_LIGHT = np.array([0.97, 0.97, 0.97])
_STRIPES_PER_SQUARE = 4  # Stripe width is the object's diameter / 4.


@dataclasses.dataclass(frozen=True)
class Scenes:
  """A batch of scene descriptions, in units of the image side.

  Attributes:
    centers: float [n, MAX_OBJECTS, 2] object centres (y, x) in [0, 1].
    radii: float [n, MAX_OBJECTS] disc radius = half the square's side.
    colors: int [n, MAX_OBJECTS] palette index of each object.
    present: bool [n, MAX_OBJECTS] which objects exist (at least the first one does).
  """

  centers: np.ndarray
  radii: np.ndarray
  colors: np.ndarray
  present: np.ndarray

  def __len__(self) -> int:
    return len(self.radii)

  def __getitem__(self, index: int | slice) -> Scenes:
    if isinstance(index, int):
      index = slice(index, index + 1)
    return Scenes(
      self.centers[index], self.radii[index], self.colors[index], self.present[index]
    )


def check_task(name: str) -> None:
  """Raises ValueError, listing the valid tasks, when `name` is not one."""
  if name not in TASKS:
    raise ValueError(
      f'Unknown synthetic dataset {name!r}; valid: '
      + ', '.join(f"'synthetic:{t}'" for t in TASKS)
      + '.'
    )


def num_examples(split: str) -> int:
  """Images in a split of any task (no rendering)."""
  _check_split(split)
  if split.startswith('train'):
    return NUM_TRAIN
  return NUM_VAL if split.startswith('val') else NUM_TEST


def scenes(name: str, split: str) -> Scenes:
  """The scenes of a task's split: a fixed function of (name, split)."""
  check_task(name)
  if name in _SCENE_MODULES:
    raise ValueError(
      f'synthetic:{name} has no disc scenes; use load_split or load_pairs.'
    )
  _check_split(split)
  # A stable seed per (task, split): trainA and trainB get unrelated scenes (unpaired).
  rng = np.random.default_rng([zlib.crc32(name.encode()), zlib.crc32(split.encode())])
  n = num_examples(split)
  radii = rng.uniform(0.12, 0.22, size=(n, MAX_OBJECTS))
  centers = rng.uniform(
    radii[..., None], 1.0 - radii[..., None], size=(n, MAX_OBJECTS, 2)
  )
  if name in _COLOUR_FREQUENCIES:
    colors = rng.choice(
      len(_PALETTE_A), size=(n, MAX_OBJECTS), p=_COLOUR_FREQUENCIES[name]
    )
  else:  # Uniform, drawn as before so that the existing tasks' scenes stay the same.
    colors = rng.integers(0, len(_PALETTE_A), size=(n, MAX_OBJECTS))
  count = rng.integers(1, MAX_OBJECTS + 1, size=(n,))
  present = np.arange(MAX_OBJECTS)[None, :] < count[:, None]
  return Scenes(centers, radii, colors, present)


def render(name: str, scene_batch: Scenes, domain: str, size: int) -> np.ndarray:
  """Draws scenes in domain 'A' or 'B' of a task: uint8 [n, size, size, C].

  C is 1 for the gray domain of `gray2color` / `color2gray`, else 3.
  """
  check_task(name)
  if name in _SCENE_MODULES:
    raise ValueError(
      f'synthetic:{name} has no disc scenes; use load_split or load_pairs.'
    )
  if domain not in ('A', 'B'):
    raise ValueError(f"domain must be 'A' or 'B', got {domain!r}.")
  images = np.stack(
    [_render_one(name, scene_batch[i], domain, size) for i in range(len(scene_batch))]
  ).astype(np.uint8)
  if GRAY_DOMAIN.get(name) == domain:
    return channels.luma8(images)
  return images


def domain_channels(name: str) -> dict[str, int]:
  """{'A': channels, 'B': channels} of a task's images."""
  check_task(name)
  return {d: 1 if GRAY_DOMAIN.get(name) == d else 3 for d in 'AB'}


@functools.lru_cache(maxsize=4)
def load_split(name: str, split: str, size: int) -> tuple[np.ndarray, np.ndarray | None]:
  """Renders a split: (images uint8 [n, size, size, C], ground truth or None).

  The ground truth (test and validation splits) is the same scenes drawn in the other
  domain.
  The arrays are cached and read-only.
  """
  domain = split[-1]
  if name in _SCENE_MODULES:
    return _module_split(name, split, size)
  batch = scenes(name, split)
  images = render(name, batch, domain, size)
  gt = None
  if not split.startswith('train'):
    gt = render(name, batch, 'B' if domain == 'A' else 'A', size)
    gt.flags.writeable = False
  images.flags.writeable = False
  return images, gt


@functools.lru_cache(maxsize=4)
def load_pairs(name: str, phase: str, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Paired split (phase 'train' or 'test'): (A, B) uint8 [n, size, size, C_A | C_B].

  Pair i is scene i of `phase`A drawn in domain A and in domain B; read-only arrays.
  """
  if phase not in ('train', 'test'):
    raise ValueError(f"phase must be 'train' or 'test', got {phase!r}.")
  if name in _SCENE_MODULES:
    return _module_domains(name, f'{phase}A', size)
  images, gt = load_split(name, f'{phase}A', size)
  if gt is None:  # Train splits carry no ground truth: draw B here.
    gt = render(name, scenes(name, f'{phase}A'), 'B', size)
    gt.flags.writeable = False
  return images, gt


def pair_names(name: str, phase: str) -> list[str]:
  """Stems of a paired split's pairs, e.g. 'shapes_test_0007'."""
  return [f'{name}_{phase}_{i:04d}' for i in range(num_examples(f'{phase}A'))]


def names(name: str, split: str) -> list[str]:
  """File stems of a split's images, e.g. 'shapes_testA_0007'."""
  return [f'{name}_{split}_{i:04d}' for i in range(num_examples(split))]


def _module_domains(name: str, split: str, size: int) -> tuple[np.ndarray, np.ndarray]:
  """(A, B) of a module-drawn task's split: each scene in both domains, read-only."""
  photos, ids = _SCENE_MODULES[name].render_split(split, num_examples(split), size)
  label_maps = _SCENE_MODULES[name].colors(ids)
  label_maps.flags.writeable = False
  return photos, label_maps


def _module_split(
  name: str, split: str, size: int
) -> tuple[np.ndarray, np.ndarray | None]:
  a, b = _module_domains(name, split, size)
  images, other = (a, b) if split.endswith('A') else (b, a)
  return images, other if split.startswith('test') else None


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}.')


def _render_one(name: str, scene: Scenes, domain: str, size: int) -> np.ndarray:
  """One scene as uint8 [size, size, 3], supersampled then box-filtered."""
  ss = _SUPERSAMPLE if size <= 64 else 2  # 2× is smooth enough at large sizes.
  s = size * ss
  coords = (np.arange(s) + 0.5) / s  # Pixel centres in units of the image side.
  if name in GRAY_DOMAIN:
    domain = 'A'  # Both domains are one coloured scene; the gray one takes its luma.
  background = _BACKGROUND_A if domain == 'A' else _BACKGROUND_B
  canvas = np.empty((s, s, 3), np.float32)
  canvas[...] = background
  palette = _PALETTE_A if domain == 'A' else _PALETTE_B
  for k in range(MAX_OBJECTS):
    if not scene.present[0, k]:
      continue
    (cy, cx), r = scene.centers[0, k], scene.radii[0, k]
    # Only the object's bounding box is touched (fast at 256+ px).
    y0, y1 = np.searchsorted(coords, [cy - r, cy + r], side='left')
    x0, x1 = np.searchsorted(coords, [cx - r, cx + r], side='left')
    yy, xx = coords[y0:y1, None], coords[None, x0:x1]
    colour = palette[scene.colors[0, k]]
    if name in _STRIPED and domain == 'B':
      # The disc's bounding square, with stripes anchored at its left edge so the
      # texture is a function of the scene that a generator can learn.
      stripe = np.floor((xx - (cx - r)) / (2 * r / _STRIPES_PER_SQUARE)).astype(int) % 2
      fill = np.where((stripe == 0)[..., None], colour, _STRIPE_LIGHT)
      canvas[y0:y1, x0:x1] = np.broadcast_to(fill, (y1 - y0, x1 - x0, 3))
    else:
      mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
      # Later objects occlude earlier ones, identically in both domains.
      canvas[y0:y1, x0:x1][mask] = colour
  small = canvas.reshape(size, ss, size, ss, 3).mean(axis=(1, 3))
  return np.clip(np.round(small * 255.0), 0, 255).astype(np.uint8)
