"""Tests of the built-in generated domains."""

import numpy as np
import pytest

from cyclegan_jax.data import synthetic


def _one_object_scene(name, split):
  """Index of a scene with a single object (the simplest to reason about)."""
  scenes = synthetic.scenes(name, split)
  return int(np.flatnonzero(scenes.present.sum(axis=1) == 1)[0]), scenes


def test_sizes_and_dtype():
  images, gt = synthetic.load_split('shapes', 'trainA', 36)
  assert images.shape == (synthetic.NUM_TRAIN, 36, 36, 3) and images.dtype == np.uint8
  assert gt is None
  images, gt = synthetic.load_split('shapes', 'testB', 48)
  assert images.shape == gt.shape == (synthetic.NUM_TEST, 48, 48, 3)
  assert len(synthetic.names('shapes', 'testB')) == synthetic.NUM_TEST


def test_deterministic():
  a = synthetic.render('shapes', synthetic.scenes('shapes', 'trainA')[:5], 'A', 32)
  b = synthetic.render('shapes', synthetic.scenes('shapes', 'trainA')[:5], 'A', 32)
  np.testing.assert_array_equal(a, b)


def test_train_domains_come_from_different_scenes():
  a, b = synthetic.scenes('shapes', 'trainA'), synthetic.scenes('shapes', 'trainB')
  assert not np.allclose(a.centers, b.centers)
  # Unpaired: drawing A's scenes in domain B does not give B's train images.
  a_as_b = synthetic.render('shapes', a[:10], 'B', 32)
  b_images, _ = synthetic.load_split('shapes', 'trainB', 32)
  assert not np.array_equal(a_as_b, b_images[:10])


@pytest.mark.parametrize('split, other', [('testA', 'B'), ('testB', 'A')])
def test_ground_truth_is_the_same_scene_in_the_other_domain(split, other):
  images, gt = synthetic.load_split('shapes', split, 32)
  scenes = synthetic.scenes('shapes', split)
  np.testing.assert_array_equal(
    gt[7], synthetic.render('shapes', scenes[7], other, 32)[0]
  )
  assert not np.array_equal(images[7], gt[7])


def test_shapes_changes_colour_shape_and_texture():
  size = 64
  i, scenes = _one_object_scene('shapes', 'testA')
  scene = scenes[i]
  a = synthetic.render('shapes', scene, 'A', size)[0].astype(int)
  b = synthetic.render('shapes', scene, 'B', size)[0].astype(int)
  (cy, cx), r = scene.centers[0, 0], scene.radii[0, 0]
  row = int(cy * size)
  cols = np.arange(int((cx - r) * size) + 2, int((cx + r) * size) - 1)
  # Texture: A is flat across the object, B alternates stripes along the same row.
  assert np.ptp(a[row, cols], axis=0).max() < 10
  b_changes = np.abs(np.diff(b[row, cols].sum(axis=-1))) > 100
  assert b_changes.sum() >= 3
  # Shape: near a corner of the bounding box A shows background, B the object.
  corner = (int((cy - r) * size) + 1, int((cx - r) * size) + 1)
  np.testing.assert_allclose(a[corner], a[0, 0], atol=3)  # Background in A.
  assert np.abs(b[corner] - b[0, 0]).sum() > 100  # Object in B.
  # Colour: backgrounds and object colours differ between the domains.
  assert np.abs(a[0, 0] - b[0, 0]).sum() > 300
  colour_a = a[row, int(cx * size)]
  assert all(np.abs(colour_a - b[row, c]).sum() > 100 for c in cols)


def test_colors_changes_colour_only():
  i, scenes = _one_object_scene('colors', 'testA')
  a = synthetic.render('colors', scenes[i], 'A', 32)[0]
  b = synthetic.render('colors', scenes[i], 'B', 32)[0]
  # The same silhouette: pixels that differ from the background coincide.
  mask_a = np.abs(a.astype(int) - a[0, 0]).sum(-1) > 30
  mask_b = np.abs(b.astype(int) - b[0, 0]).sum(-1) > 30
  assert (mask_a != mask_b).mean() < 0.02
  assert mask_a.sum() > 10


def test_unknown_task_lists_the_valid_ones():
  with pytest.raises(ValueError, match='synthetic:shapes'):
    synthetic.scenes('circles', 'trainA')


def test_validation_splits_are_scenes_of_their_own_with_ground_truth():
  images, gt = synthetic.load_split('shapes', 'valA', 32)
  assert images.shape == gt.shape == (synthetic.NUM_VAL, 32, 32, 3)
  np.testing.assert_array_equal(
    gt, synthetic.render('shapes', synthetic.scenes('shapes', 'valA'), 'B', 32)
  )
  val = synthetic.scenes('shapes', 'valA').centers
  for split in ('trainA', 'trainB', 'testA', 'testB', 'valB'):
    assert not np.allclose(val, synthetic.scenes('shapes', split).centers[: len(val)])
  assert synthetic.names('shapes', 'valB')[0] == 'shapes_valB_0000'


def test_shapes_scenes_stay_the_same():
  # Every recorded `shapes` result depends on these scenes: adding tasks must not move them.
  scenes = synthetic.scenes('shapes', 'trainA')
  assert scenes.colors[:4].tolist() == [[2, 0, 2], [2, 0, 0], [1, 1, 0], [0, 0, 2]]
  assert int(scenes.colors.sum()) == 1799
  np.testing.assert_allclose(scenes.radii[0], [0.21118, 0.181822, 0.179716], atol=1e-6)


def test_shapes_ranked_draws_colours_by_rank_in_both_domains():
  for split in ('trainA', 'trainB'):
    scenes = synthetic.scenes('shapes_ranked', split)
    shares = (
      np.bincount(scenes.colors[scenes.present], minlength=3) / scenes.present.sum()
    )
    # 60 / 30 / 10 %: the frequencies order the colours, so they pair the palettes.
    np.testing.assert_allclose(shares, [0.6, 0.3, 0.1], atol=0.04)
  uniform = synthetic.scenes('shapes', 'trainA')
  shares = (
    np.bincount(uniform.colors[uniform.present], minlength=3) / uniform.present.sum()
  )
  np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.04)


def test_shapes_ranked_draws_as_shapes_does():
  i, scenes = _one_object_scene('shapes_ranked', 'testA')
  for domain in 'AB':
    np.testing.assert_array_equal(
      synthetic.render('shapes_ranked', scenes[i], domain, 32),
      synthetic.render('shapes', scenes[i], domain, 32),
    )
