"""`synthetic:streets`: street scenes as Cityscapes label maps and as photo-like images.

A labels↔photo benchmark with exact truth both ways, small enough to train every method
on a CPU. Each scene is drawn once as a label map (Cityscapes label ids, shown in the
official colours) and once as a photo rendered from the same map; domain A is the photo
and B the colour label map, as in the official `prepare_cityscapes_dataset.py` (photo on
the left). So AtoB is photo→labels (the papers' Table 3) and BtoA labels→photo (Table 2).

A scene: sky above a horizon; a row of buildings with a ragged roof line; a road in
perspective towards a vanishing point, flanked by sidewalks and grass verges (terrain);
trees (vegetation) at the sides; cars on the road and people on the sidewalks, sized by
their depth; in half of the scenes the bonnet of the ego car at the bottom (label 'ego
vehicle', ignored in scoring, as in Cityscapes). The photo gives each class a texture of
its own (windows on facades, lane marks, paving, leaves, clouds), per-object colours,
shading and sensor noise; its pixel (y, x) shows the class of label pixel (y, x).

Scenes are a fixed function of (split, index): the geometry of scene i does not depend
on the size it is drawn at. trainA and trainB hold different scenes (unpaired).
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

from cyclegan_jax.data import labels

# Bump when the drawing changes: cached segmenters (evaluation/fcn_score.py) key on it.
VERSION = 1
# The classes a streets scene holds (the benchmark's class means average over these).
CLASSES = (
  'road',
  'sidewalk',
  'building',
  'vegetation',
  'terrain',
  'sky',
  'person',
  'car',
)
_ID = {lb.name: lb.id for lb in labels.LABELS}
_EGO = _ID['ego vehicle']  # Ignored in scoring, as in Cityscapes.
_ID_TO_TRAIN = np.full(256, labels.IGNORE, np.uint8)
_ID_TO_COLOR = np.zeros((256, 3), np.uint8)
for _lb in labels.LABELS:
  if _lb.id >= 0:
    _ID_TO_TRAIN[_lb.id] = _lb.train_id if _lb.train_id >= 0 else labels.IGNORE
    _ID_TO_COLOR[_lb.id] = _lb.color

_FACADES = np.array(
  [[150, 140, 130], [175, 160, 135], [130, 90, 75], [110, 110, 115], [190, 185, 170]],
  np.float32,
)
_CAR_PAINTS = np.array(
  [[170, 30, 35], [35, 60, 150], [215, 215, 215], [30, 30, 32], [140, 145, 150]],
  np.float32,
)
_CLOTHES = np.array([[40, 40, 60], [120, 30, 30], [30, 90, 60], [90, 80, 70]], np.float32)
_SKIN = np.array([205, 165, 135], np.float32)
_NOISE_SIGMA = 4.0  # Sensor noise, in 8-bit levels.


def check_split(split: str) -> None:
  if split not in ('trainA', 'trainB', 'testA', 'testB'):
    raise ValueError(f'split must be trainA, trainB, testA or testB, got {split!r}.')


@functools.lru_cache(maxsize=8)
def render_split(split: str, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  """The first `count` scenes of a split: (photos uint8 [n, S, S, 3], ids uint8 [n, S, S]).

  `ids` are Cityscapes label ids (`train_ids` and `colors` convert them). Read-only.
  """
  check_split(split)
  if size < 8:
    raise ValueError(f'synthetic:streets needs images of at least 8 px, got {size}.')
  photos = np.empty((count, size, size, 3), np.uint8)
  ids = np.empty((count, size, size), np.uint8)
  for i in range(count):
    ids[i], photos[i] = render_scene(split, i, size)
  photos.flags.writeable = False
  ids.flags.writeable = False
  return photos, ids


def train_ids(ids: np.ndarray) -> np.ndarray:
  """Label ids -> train ids (uint8, IGNORE for the ego vehicle)."""
  return _ID_TO_TRAIN[ids]


def colors(ids: np.ndarray) -> np.ndarray:
  """Label ids -> the official colours, uint8 [..., 3] (the B domain's images)."""
  return _ID_TO_COLOR[ids]


def render_scene(split: str, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
  """Scene `index` of `split`: (label ids uint8 [S, S], photo uint8 [S, S, 3])."""
  seed = [zlib.crc32(b'streets'), zlib.crc32(split.encode()), index]
  rng = np.random.default_rng(seed)  # Geometry and colours: independent of size.
  noise_rng = np.random.default_rng(seed + [size])
  y = ((np.arange(size) + 0.5) / size)[:, None]
  x = ((np.arange(size) + 0.5) / size)[None, :]
  ids = np.full((size, size), _ID['sky'], np.uint8)
  photo = np.empty((size, size, 3), np.float32)

  horizon = rng.uniform(0.38, 0.52)
  vanish = rng.uniform(0.35, 0.65)
  road_half = rng.uniform(0.28, 0.45)  # Half-width at the bottom edge.
  walk = rng.uniform(0.10, 0.22)
  depth = np.clip((y - horizon) / (1.0 - horizon), 0.0, 1.0)  # 0 at the horizon.
  below = y > horizon

  # Sky: a vertical gradient with soft clouds.
  sky_top = rng.uniform([50, 100, 170], [90, 140, 215])
  sky_low = rng.uniform([170, 190, 215], [205, 220, 240])
  t = np.clip(y / horizon, 0.0, 1.0)[..., None]
  clouds = np.clip(_smooth_noise(noise_rng, size, 5), 0.0, None)[..., None]
  photo[...] = (sky_top * (1 - t) + sky_low * t) + 60.0 * clouds

  # Buildings: blocks along x, each from its roof down to the horizon.
  cuts = np.sort(rng.uniform(0.0, 1.0, rng.integers(2, 6)))
  edges = np.concatenate([[0.0], cuts, [1.0]])
  for left, right in zip(edges[:-1], edges[1:]):
    roof = rng.uniform(0.06, horizon - 0.06)
    mask = (x >= left) & (x < right) & (y >= roof) & ~below
    facade = _FACADES[rng.integers(len(_FACADES))] * rng.uniform(0.8, 1.1)
    period = rng.uniform(0.035, 0.06)
    windows = ((x - left) / period % 1.0 > 0.3) & ((y - roof) / period % 1.0 > 0.35)
    colour = np.where(windows[..., None], facade * 0.45 + [10, 15, 25], facade)
    colour = colour * (0.85 + 0.15 * (x - left) / max(right - left, 1e-6))[..., None]
    _paint(ids, photo, mask, _ID['building'], colour)

  # Ground: verges, sidewalks and the road, in perspective.
  offset = np.abs(x - vanish)
  colour = (
    np.array([120, 155, 70], np.float32)
    + 25.0 * _smooth_noise(noise_rng, size, 12)[..., None]
  )
  _paint(ids, photo, below, _ID['terrain'], colour)
  side = below & (offset <= (road_half + walk) * depth)
  tiles = ((depth * 24.0) % 1.0 < 0.12)[..., None]
  _paint(ids, photo, side, _ID['sidewalk'], np.where(tiles, 135.0, 175.0) + [0, 0, 5])
  road = below & (offset <= road_half * depth)
  lane = (offset <= 0.012 * depth + 0.002) & ((depth * 8.0) % 1.0 < 0.5)
  asphalt = 80.0 + 8.0 * _smooth_noise(noise_rng, size, 20)[..., None]
  _paint(ids, photo, road, _ID['road'], np.where(lane[..., None], 225.0, asphalt))

  # Trees beside the road: leafy discs that may cover buildings, sky and verges.
  for _ in range(rng.integers(0, 4)):
    side_sign = rng.choice([-1.0, 1.0])
    cy = rng.uniform(horizon - 0.2, horizon + 0.02)
    cx = vanish + side_sign * rng.uniform(0.15, 0.55)
    r = rng.uniform(0.05, 0.12)
    mask = ((y - cy) ** 2 + ((x - cx) * 0.9) ** 2 <= r**2) & ~road & ~side
    leaves = 25.0 * noise_rng.standard_normal((size, size))[..., None]
    _paint(ids, photo, mask, _ID['vegetation'], np.array([60, 100, 40]) + leaves)

  # Cars on the road and people on the sidewalks, far ones first.
  things = [('car', rng.uniform(0.15, 0.95)) for _ in range(rng.integers(0, 4))]
  things += [('person', rng.uniform(0.1, 0.85)) for _ in range(rng.integers(0, 3))]
  for kind, d in sorted(things, key=lambda item: item[1]):
    bottom = horizon + d * (1.0 - horizon)
    if kind == 'car':
      cx = vanish + rng.uniform(-0.65, 0.65) * road_half * d
      width = rng.uniform(0.45, 0.6) * road_half * d
      height = width * rng.uniform(0.55, 0.7)
      top = bottom - height
      mask = (np.abs(x - cx) <= width / 2) & (y >= top) & (y <= bottom)
      paint = _CAR_PAINTS[rng.integers(len(_CAR_PAINTS))]
      glass = (y < top + 0.4 * height) & (np.abs(x - cx) <= width * 0.4)
      wheels = (y > bottom - 0.18 * height) & (np.abs(x - cx) >= width * 0.3)
      shade = (1.0 - 0.25 * (y - top) / max(height, 1e-6))[..., None]
      colour = np.where(glass[..., None], [45, 55, 70], paint * shade)
      colour = np.where(wheels[..., None], [20, 20, 20], colour)
      _paint(ids, photo, mask, _ID['car'], colour)
    else:
      sign = rng.choice([-1.0, 1.0])
      cx = vanish + sign * (road_half + walk * rng.uniform(0.3, 0.7)) * d
      height = rng.uniform(0.35, 0.5) * d
      width = height * 0.28
      top = bottom - height
      mask = (np.abs(x - cx) <= width / 2) & (y >= top) & (y <= bottom)
      head = y < top + 0.18 * height
      legs = y > top + 0.55 * height
      clothes = _CLOTHES[rng.integers(len(_CLOTHES))]
      colour = np.where(head[..., None], _SKIN, clothes)
      colour = np.where(legs[..., None], clothes * 0.6, colour)
      _paint(ids, photo, mask, _ID['person'], colour)

  # The ego car's bonnet (void), in half of the scenes.
  if rng.random() < 0.5:
    rise = rng.uniform(0.05, 0.1)
    mask = y >= 1.0 - rise * (1.0 - ((x - 0.5) / 0.75) ** 2)
    _paint(ids, photo, mask, _EGO, np.array([45, 45, 50]) + 60.0 * (1.0 - y)[..., None])

  light = rng.uniform(0.8, 1.15)
  photo = photo * light + _NOISE_SIGMA * noise_rng.standard_normal(photo.shape)
  return ids, np.clip(np.round(photo), 0, 255).astype(np.uint8)


def _paint(
  ids: np.ndarray, photo: np.ndarray, mask: np.ndarray, label_id: int, colour
) -> None:
  """Sets the label and the photo's colour where `mask` (both broadcast to [S, S])."""
  mask = np.broadcast_to(mask, ids.shape)
  ids[mask] = label_id
  photo[mask] = np.broadcast_to(np.asarray(colour, np.float32), photo.shape)[mask]


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
  """Unit-variance-ish noise [S, S] varying over `cells` cells per side (bilinear)."""
  grid = rng.standard_normal((cells + 1, cells + 1))
  pos = (np.arange(size) + 0.5) / size * cells
  i = np.minimum(pos.astype(int), cells - 1)
  f = pos - i
  rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]  # [S, cells + 1]
  return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]
