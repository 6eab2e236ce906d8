"""The segmentation scores of the CycleGAN / pix2pix papers' Cityscapes tables.

Pure numpy, no JAX. Label maps hold Cityscapes train ids (`cyclegan_jax.data.labels`:
0..18, `IGNORE` = 255 for the labels left out). The scores are those of the official
`scripts/eval_cityscapes/util.py`:

  hist[t, p]   pixels of true train id t predicted as p (`confusion_matrix`; only true
               ids in [0, n) count, as its `fast_hist`)
  pixel acc    = trace(hist) / hist.sum()
  class acc    = mean over classes of hist[c, c] / hist[c, :].sum()
  class IoU    = mean over classes of hist[c, c] / (hist[c, :].sum() + hist[:, c].sum()
                 - hist[c, c])

with its 1e-12 added to each denominator and `np.nanmean`. Two choices of ours, both
documented in docs/protocol.md:

* A *predicted* pixel outside [0, n) (a generated label map whose nearest colour is a
  void one) is counted as wrong, in an extra last column of `hist` (n x (n + 1)), as
  the Cityscapes benchmark counts a void prediction (a false negative of the true
  class, not a false positive of any). The official `fast_hist` drops the whole frame
  instead (its bincount has the wrong length), which would reward a generator for
  painting one void pixel.
* `classes`: the classes averaged over. The official mean is over all 19, and its
  epsilon makes a class absent from both truth and prediction score 0 (not nan); on
  Cityscapes val every class occurs. A benchmark of a few classes (`synthetic:streets`)
  averages over its own classes; a wrong prediction of any other class still counts
  against the true class's row.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cyclegan_jax.data import labels

IGNORE = labels.IGNORE
NUM_CLASSES = labels.NUM_CLASSES

EPS = 1e-12  # The official get_scores' denominator offset.


def confusion_matrix(
  true_ids: np.ndarray, pred_ids: np.ndarray, num_classes: int = NUM_CLASSES
) -> np.ndarray:
  """hist [n, n + 1] (int64): rows true ids, columns predicted ids, last column void.

  Pixels whose true id is outside [0, n) (IGNORE) are left out, as the official
  `fast_hist`; a predicted id outside [0, n) counts in the last column.
  """
  true_ids, pred_ids = np.asarray(true_ids), np.asarray(pred_ids)
  if true_ids.shape != pred_ids.shape:
    raise ValueError(
      f'Label maps of different shapes: truth {true_ids.shape}, prediction '
      f'{pred_ids.shape}; resize the prediction to the truth first.'
    )
  t = true_ids.reshape(-1).astype(np.int64)
  p = pred_ids.reshape(-1).astype(np.int64)
  keep = (t >= 0) & (t < num_classes)
  t, p = t[keep], p[keep]
  p = np.where((p >= 0) & (p < num_classes), p, num_classes)
  counts = np.bincount(
    t * (num_classes + 1) + p, minlength=num_classes * (num_classes + 1)
  )
  return counts.reshape(num_classes, num_classes + 1)


def scores(hist: np.ndarray, classes: Sequence[int] | None = None) -> dict[str, object]:
  """The official get_scores of a confusion matrix [n, n] or [n, n + 1].

  Args:
    hist: from `confusion_matrix` (summed over images), or the official n x n one.
    classes: train ids averaged over for the class means (default: all n).

  Returns:
    {'pixel_acc', 'class_acc', 'class_iou': floats; 'per_class_acc',
    'per_class_iou': float64 [n] arrays (0 for a class never true nor predicted)}.
  """
  hist = np.asarray(hist, np.float64)
  n = hist.shape[0]
  if hist.ndim != 2 or hist.shape[1] not in (n, n + 1):
    raise ValueError(f'hist must be [n, n] or [n, n + 1], got {hist.shape}.')
  diag = np.diag(hist[:, :n])
  rows = hist.sum(axis=1)  # True pixels of each class (void predictions included).
  cols = hist[:, :n].sum(axis=0)  # Pixels predicted as each class.
  per_class_acc = diag / (rows + EPS)
  per_class_iou = diag / (rows + cols - diag + EPS)
  chosen = np.arange(n) if classes is None else np.asarray(classes, np.int64)
  return {
    'pixel_acc': float(diag.sum() / (hist.sum() + EPS)),
    'class_acc': float(np.nanmean(per_class_acc[chosen])),
    'class_iou': float(np.nanmean(per_class_iou[chosen])),
    'per_class_acc': per_class_acc,
    'per_class_iou': per_class_iou,
  }


def score_label_maps(
  true_ids: np.ndarray,
  pred_ids: np.ndarray,
  *,
  classes: Sequence[int] | None = None,
  num_classes: int = NUM_CLASSES,
) -> dict[str, object]:
  """The three scores of predicted train-id maps against true ones, all images pooled.

  One confusion matrix over every pixel of every image (the official evaluate.py
  sums its per-frame histograms), then `scores`.
  """
  return scores(confusion_matrix(true_ids, pred_ids, num_classes), classes)


def score_photo_to_labels(
  generated: np.ndarray,
  true_ids: np.ndarray,
  *,
  classes: Sequence[int] | None = None,
) -> dict[str, object]:
  """Table 3 (photo→labels): generated colour label maps scored against the truth.

  Args:
    generated: uint8 [N, H, W, 3] label maps a generator painted.
    true_ids: int [N, H, W] true train ids (IGNORE left out).
    classes: train ids of the class means (default: all 19).

  Each generated pixel becomes the train id of its nearest palette colour (a void
  colour: wrong, see the module doc); then `score_label_maps`.
  """
  pred = labels.colors_to_train_ids(generated)
  return score_label_maps(true_ids, pred, classes=classes)
