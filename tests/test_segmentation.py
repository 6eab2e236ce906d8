"""Tests of the Cityscapes label table and the official segmentation scores."""

import numpy as np
import pytest

from cyclegan_jax.data import labels
from cyclegan_jax.evaluation import segmentation

IGNORE = labels.IGNORE


def test_label_table_is_cityscapes():
  assert labels.NUM_CLASSES == 19
  # The official evaluate.py's class list, in train-id order.
  assert labels.CLASS_NAMES == (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
    'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck',
    'bus', 'train', 'motorcycle', 'bicycle',
  )  # fmt: skip
  by_name = {lb.name: lb for lb in labels.LABELS}
  assert by_name['road'].color == (128, 64, 128) and by_name['road'].id == 7
  assert by_name['car'].train_id == 13 and by_name['car'].color == (0, 0, 142)
  assert by_name['sky'].color == (70, 130, 180)
  assert by_name['parking'].train_id == IGNORE and by_name['parking'].ignore_in_eval
  assert sum(not lb.ignore_in_eval for lb in labels.LABELS) == 19


def test_colors_map_to_train_ids_with_void_ignored():
  by_name = {lb.name: lb for lb in labels.LABELS}
  pixels = np.array(
    [
      by_name['road'].color,
      by_name['polegroup'].color,  # Shares pole's colour: pole.
      by_name['license plate'].color,  # Shares car's colour: car.
      by_name['unlabeled'].color,  # Void.
      by_name['ground'].color,  # Void.
      by_name['rail track'].color,  # Ignored.
    ],
    np.uint8,
  )
  np.testing.assert_array_equal(
    labels.colors_to_train_ids(pixels), [0, 5, 13, IGNORE, IGNORE, IGNORE]
  )


def test_nearest_colour_survives_jpeg_like_noise():
  rng = np.random.default_rng(3)
  ids = rng.integers(0, 19, size=(2, 16, 16))
  noisy = labels.colorize(ids).astype(int) + rng.integers(-9, 10, size=(2, 16, 16, 3))
  np.testing.assert_array_equal(
    labels.colors_to_train_ids(np.clip(noisy, 0, 255).astype(np.uint8)), ids
  )


def test_colorize_round_trips():
  ids = np.arange(19).reshape(1, 19)
  np.testing.assert_array_equal(labels.colors_to_train_ids(labels.colorize(ids)), ids)
  assert labels.colorize(np.array([IGNORE]))[0].tolist() == [0, 0, 0]


def test_hand_made_scores():
  # Truth [[0, 0], [1, ignore]], prediction [[0, 1], [1, 0]]: the ignored pixel is
  # left out; hist = [[1, 1], [0, 1]].
  truth = np.array([[0, 0], [1, IGNORE]])
  pred = np.array([[0, 1], [1, 0]])
  hist = segmentation.confusion_matrix(truth, pred, num_classes=2)
  np.testing.assert_array_equal(hist, [[1, 1, 0], [0, 1, 0]])
  s = segmentation.scores(hist)
  assert s['pixel_acc'] == pytest.approx(2 / 3)
  assert s['class_acc'] == pytest.approx((1 / 2 + 1) / 2)
  # IoU of 0: 1 / (2 + 1 - 1); of 1: 1 / (1 + 2 - 1).
  assert s['class_iou'] == pytest.approx(0.5)


def test_perfect_and_all_wrong():
  truth = np.array([[0, 1, 2, 2]])
  perfect = segmentation.score_label_maps(truth, truth, classes=[0, 1, 2])
  assert perfect['pixel_acc'] == pytest.approx(1.0)
  assert perfect['class_acc'] == pytest.approx(1.0)
  assert perfect['class_iou'] == pytest.approx(1.0)
  wrong = segmentation.score_label_maps(truth, (truth + 1) % 3, classes=[0, 1, 2])
  assert wrong['pixel_acc'] == wrong['class_acc'] == wrong['class_iou'] == 0.0


def test_void_prediction_counts_as_wrong_not_as_a_dropped_frame():
  truth = np.array([[0, 0, 1, 1]])
  pred = np.array([[0, IGNORE, 1, 1]])
  s = segmentation.score_label_maps(truth, pred, classes=[0, 1])
  assert s['pixel_acc'] == pytest.approx(3 / 4)
  assert s['per_class_acc'][0] == pytest.approx(1 / 2)
  # A void prediction is no false positive of any class: class 1's IoU stays 1.
  assert s['per_class_iou'][1] == pytest.approx(1.0)
  assert s['per_class_iou'][0] == pytest.approx(1 / 2)


def test_absent_classes_score_zero_as_the_official_epsilon_makes_them():
  truth = np.zeros((4, 4), int)
  s = segmentation.score_label_maps(truth, truth)  # All 19 classes averaged.
  assert s['class_iou'] == pytest.approx(1 / 19)
  only_road = segmentation.score_label_maps(truth, truth, classes=[0])
  assert only_road['class_iou'] == pytest.approx(1.0)


def _official_fast_hist(a, b, n):
  """scripts/eval_cityscapes/util.py's fast_hist, as written there."""
  k = np.where((a >= 0) & (a < n))[0]
  bc = np.bincount(n * a[k].astype(int) + b[k], minlength=n**2)
  if len(bc) != n**2:
    return 0
  return bc.reshape(n, n)


def _official_get_scores(hist):
  acc = np.diag(hist).sum() / (hist.sum() + 1e-12)
  cl_acc = np.diag(hist) / (hist.sum(1) + 1e-12)
  iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist) + 1e-12)
  return acc, np.nanmean(cl_acc), np.nanmean(iu), cl_acc, iu


def _counted(truth, pred, classes):
  """The three scores by counting pixel sets class by class (no confusion matrix)."""
  valid = (truth >= 0) & (truth < 19)
  accs, ious = [], []
  for c in classes:
    tp = np.count_nonzero(valid & (truth == c) & (pred == c))
    fn = np.count_nonzero(valid & (truth == c) & (pred != c))
    fp = np.count_nonzero(valid & (truth != c) & (pred == c))
    accs.append(tp / (tp + fn) if tp + fn else 0.0)
    ious.append(tp / (tp + fp + fn) if tp + fp + fn else 0.0)
  pixel = np.count_nonzero(valid & (truth == pred)) / np.count_nonzero(valid)
  return pixel, float(np.mean(accs)), float(np.mean(ious))


@pytest.mark.parametrize('seed', [11, 12, 13])
def test_scores_match_an_independent_count_on_unseen_label_maps(seed):
  rng = np.random.default_rng(seed)
  shape = (3, 24, 40)
  # Skewed class frequencies, ignored truth pixels and void predictions.
  probs = rng.dirichlet(np.full(19, 0.5))
  truth = rng.choice(19, size=shape, p=probs)
  truth[rng.random(shape) < 0.1] = IGNORE
  pred = np.where(rng.random(shape) < 0.6, truth, rng.choice(19, size=shape, p=probs))
  pred[rng.random(shape) < 0.05] = IGNORE
  pred[truth == IGNORE] = rng.integers(0, 19, size=np.count_nonzero(truth == IGNORE))
  classes = sorted(rng.choice(19, size=8, replace=False).tolist())
  for chosen in (classes, list(range(19))):
    s = segmentation.score_label_maps(truth, pred, classes=chosen)
    pixel, class_acc, class_iou = _counted(truth, pred, chosen)
    assert s['pixel_acc'] == pytest.approx(pixel, abs=1e-9)
    assert s['class_acc'] == pytest.approx(class_acc, abs=1e-9)
    assert s['class_iou'] == pytest.approx(class_iou, abs=1e-9)


@pytest.mark.parametrize('seed', [21, 22])
def test_scores_equal_the_official_code_without_void_predictions(seed):
  rng = np.random.default_rng(seed)
  truth = rng.integers(0, 19, size=(2, 30, 30))
  truth[rng.random(truth.shape) < 0.2] = IGNORE
  pred = np.where(rng.random(truth.shape) < 0.5, truth, rng.integers(0, 19, truth.shape))
  pred = np.where(pred == IGNORE, 0, pred)
  hist = sum(_official_fast_hist(t.ravel(), p.ravel(), 19) for t, p in zip(truth, pred))
  acc, cl_acc, iu, per_acc, per_iu = _official_get_scores(hist)
  s = segmentation.score_label_maps(truth, pred)
  assert s['pixel_acc'] == pytest.approx(acc, abs=1e-12)
  assert s['class_acc'] == pytest.approx(cl_acc, abs=1e-12)
  assert s['class_iou'] == pytest.approx(iu, abs=1e-12)
  np.testing.assert_allclose(s['per_class_iou'], per_iu, atol=1e-12)
  np.testing.assert_allclose(s['per_class_acc'], per_acc, atol=1e-12)


def test_photo_to_labels_scores_generated_colours():
  rng = np.random.default_rng(5)
  truth = rng.integers(0, 19, size=(2, 8, 8))
  painted = labels.colorize(truth).astype(int) + rng.integers(-6, 7, (2, 8, 8, 3))
  s = segmentation.score_photo_to_labels(np.clip(painted, 0, 255).astype(np.uint8), truth)
  assert s['pixel_acc'] == pytest.approx(1.0)


def test_bad_inputs_are_one_line_errors():
  with pytest.raises(ValueError, match='different shapes'):
    segmentation.confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)))
  with pytest.raises(ValueError, match='RGB'):
    labels.colors_to_train_ids(np.zeros((2, 2)))
  with pytest.raises(ValueError, match='Unknown Cityscapes class'):
    labels.class_index(['road', 'lava'])
