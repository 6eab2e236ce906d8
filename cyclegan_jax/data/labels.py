"""The Cityscapes label table, its colours, and label maps from colour images.

cityscapesScripts' `helpers/labels.py` (name, id, train id, ignoreInEval, colour): the
19 train classes have train ids 0..18; every other label (void, parking, guard rail,
...) has train id `IGNORE` = 255 and is left out of training and scoring. Colour label
maps (gtFine `*_color.png`, the B side of the official `prepare_cityscapes_dataset.py`,
a generator's photo→labels output) are read back by the nearest palette colour.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

IGNORE = 255  # Train id of the labels left out of training and scoring.


@dataclasses.dataclass(frozen=True)
class Label:
  """One row of cityscapesScripts' label table."""

  name: str
  id: int  # The id in gtFine *_labelIds.png (-1: never in a label image).
  train_id: int  # 0..18, or IGNORE.
  ignore_in_eval: bool
  color: tuple[int, int, int]  # Its colour in gtFine *_color.png.


# cityscapesScripts helpers/labels.py, in its order (the order breaks colour ties).
LABELS: tuple[Label, ...] = (
  Label('unlabeled', 0, IGNORE, True, (0, 0, 0)),
  Label('ego vehicle', 1, IGNORE, True, (0, 0, 0)),
  Label('rectification border', 2, IGNORE, True, (0, 0, 0)),
  Label('out of roi', 3, IGNORE, True, (0, 0, 0)),
  Label('static', 4, IGNORE, True, (0, 0, 0)),
  Label('dynamic', 5, IGNORE, True, (111, 74, 0)),
  Label('ground', 6, IGNORE, True, (81, 0, 81)),
  Label('road', 7, 0, False, (128, 64, 128)),
  Label('sidewalk', 8, 1, False, (244, 35, 232)),
  Label('parking', 9, IGNORE, True, (250, 170, 160)),
  Label('rail track', 10, IGNORE, True, (230, 150, 140)),
  Label('building', 11, 2, False, (70, 70, 70)),
  Label('wall', 12, 3, False, (102, 102, 156)),
  Label('fence', 13, 4, False, (190, 153, 153)),
  Label('guard rail', 14, IGNORE, True, (180, 165, 180)),
  Label('bridge', 15, IGNORE, True, (150, 100, 100)),
  Label('tunnel', 16, IGNORE, True, (150, 120, 90)),
  Label('pole', 17, 5, False, (153, 153, 153)),
  Label('polegroup', 18, IGNORE, True, (153, 153, 153)),
  Label('traffic light', 19, 6, False, (250, 170, 30)),
  Label('traffic sign', 20, 7, False, (220, 220, 0)),
  Label('vegetation', 21, 8, False, (107, 142, 35)),
  Label('terrain', 22, 9, False, (152, 251, 152)),
  Label('sky', 23, 10, False, (70, 130, 180)),
  Label('person', 24, 11, False, (220, 20, 60)),
  Label('rider', 25, 12, False, (255, 0, 0)),
  Label('car', 26, 13, False, (0, 0, 142)),
  Label('truck', 27, 14, False, (0, 0, 70)),
  Label('bus', 28, 15, False, (0, 60, 100)),
  Label('caravan', 29, IGNORE, True, (0, 0, 90)),
  Label('trailer', 30, IGNORE, True, (0, 0, 110)),
  Label('train', 31, 16, False, (0, 80, 100)),
  Label('motorcycle', 32, 17, False, (0, 0, 230)),
  Label('bicycle', 33, 18, False, (119, 11, 32)),
  Label('license plate', -1, -1, True, (0, 0, 142)),
)

# The 19 train classes by train id (the official evaluate.py's `classes`).
TRAIN_LABELS: tuple[Label, ...] = tuple(
  sorted((lb for lb in LABELS if 0 <= lb.train_id < IGNORE), key=lambda lb: lb.train_id)
)
CLASS_NAMES: tuple[str, ...] = tuple(lb.name for lb in TRAIN_LABELS)
NUM_CLASSES = len(TRAIN_LABELS)
TRAIN_COLORS = np.array([lb.color for lb in TRAIN_LABELS], np.uint8)  # [19, 3]


def _palette() -> tuple[np.ndarray, np.ndarray]:
  """(colours [P, 3], train id of each): one entry per distinct colour of the table.

  A colour shared by a train class and an ignored label (pole / polegroup, car /
  license plate) means the train class: that is what a pixel of it most often is.
  """
  colors: list[tuple[int, int, int]] = []
  ids: list[int] = []
  for label in LABELS:
    train_id = label.train_id if 0 <= label.train_id < IGNORE else IGNORE
    if label.color in colors:
      i = colors.index(label.color)
      if ids[i] == IGNORE and train_id != IGNORE:
        ids[i] = train_id
      continue
    colors.append(label.color)
    ids.append(train_id)
  return np.array(colors, np.uint8), np.array(ids, np.int64)


PALETTE_COLORS, PALETTE_TRAIN_IDS = _palette()


def class_index(names: Sequence[str]) -> np.ndarray:
  """Train ids of class names ('road', 'car', ...), or a one-line ValueError."""
  unknown = [n for n in names if n not in CLASS_NAMES]
  if unknown:
    raise ValueError(
      f'Unknown Cityscapes class(es) {", ".join(map(repr, unknown))}; the 19 are '
      + ', '.join(CLASS_NAMES)
      + '.'
    )
  return np.array([CLASS_NAMES.index(n) for n in names], np.int64)


def colorize(train_ids: np.ndarray) -> np.ndarray:
  """Train ids [...] -> uint8 colours [..., 3]; IGNORE (and any other id) is black."""
  ids = np.asarray(train_ids)
  out = np.zeros(ids.shape + (3,), np.uint8)
  valid = (ids >= 0) & (ids < NUM_CLASSES)
  out[valid] = TRAIN_COLORS[ids[valid]]
  return out


def colors_to_train_ids(
  images: np.ndarray,
  *,
  colors: np.ndarray | None = None,
  train_ids: np.ndarray | None = None,
  chunk: int = 1 << 18,
) -> np.ndarray:
  """Each pixel's nearest palette colour (Euclidean in RGB) as its train id.

  Args:
    images: uint8 (or float in [0, 255]) [..., 3] label-map images.
    colors: the palette [P, 3] (default: every colour of the Cityscapes table, so that
      void colours map to IGNORE).
    train_ids: the train id of each palette colour [P] (default: the table's).
    chunk: pixels per distance computation (bounds the memory used).

  Returns:
    int64 [...] train ids (IGNORE where the nearest colour is an ignored label's).
    Ties go to the earlier palette entry.
  """
  images = np.asarray(images)
  if images.shape[-1] != 3:
    raise ValueError(
      f'Label maps must be RGB images [..., 3], got shape {images.shape}; read them '
      "with PIL's convert('RGB')."
    )
  if colors is None:
    colors, train_ids = PALETTE_COLORS, PALETTE_TRAIN_IDS
  elif train_ids is None or len(train_ids) != len(colors):
    raise ValueError('colors_to_train_ids needs one train id per palette colour.')
  palette = np.asarray(colors, np.float32)
  ids = np.asarray(train_ids, np.int64)
  flat = images.reshape(-1, 3).astype(np.float32)
  out = np.empty(len(flat), np.int64)
  # |x - c|² = |x|² - 2 x·c + |c|²; |x|² is the same for every c, so left out.
  norms = np.sum(palette * palette, axis=1)
  for start in range(0, len(flat), chunk):
    x = flat[start : start + chunk]
    out[start : start + chunk] = ids[np.argmin(norms - 2.0 * x @ palette.T, axis=1)]
  return out.reshape(images.shape[:-1])
