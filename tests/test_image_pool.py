"""The functional image pool against the reference's rule (util/image_pool.py)."""

import jax
import jax.numpy as jnp
import numpy as np

from cyclegan_jax.methods import image_pool


def _images(start, n):
  # Image i is filled with the value i, so returned images can be identified.
  return jnp.broadcast_to(
    jnp.arange(start, start + n, dtype=jnp.float32)[:, None, None, None], (n, 2, 2, 1)
  )


def test_zero_size_pool_passes_through():
  pool = image_pool.init_pool(0, (2, 2, 1))
  x = _images(0, 3)
  pool, out = image_pool.query(pool, x, jax.random.key(0))
  np.testing.assert_array_equal(out, x)


def test_fills_first_then_returns_new_images():
  pool = image_pool.init_pool(5, (2, 2, 1))
  pool, out = image_pool.query(pool, _images(0, 3), jax.random.key(0))
  np.testing.assert_array_equal(out, _images(0, 3))
  pool, out = image_pool.query(pool, _images(3, 2), jax.random.key(1))
  np.testing.assert_array_equal(out, _images(3, 2))
  assert int(pool.count) == 5
  np.testing.assert_array_equal(pool.images[:, 0, 0, 0], np.arange(5))


def test_full_pool_statistics_match_reference_rule():
  """Once full: p=0.5 return a uniformly random stored image and store the new one."""
  size, draws = 10, 4000
  pool = image_pool.init_pool(size, (2, 2, 1))
  pool, _ = image_pool.query(pool, _images(0, size), jax.random.key(0))
  query = jax.jit(image_pool.query)

  returned_old, slot_hits = 0, np.zeros(size)
  key = jax.random.key(42)
  for i in range(draws // 100):
    key, sub = jax.random.split(key)
    before = np.asarray(pool.images[:, 0, 0, 0])
    new = _images(1000 + 100 * i, 100)
    pool, out = query(pool, new, sub)
    out = np.asarray(out[:, 0, 0, 0])
    # Values are unique, so an output differing from its input came from the pool.
    returned_old += (out != np.asarray(new[:, 0, 0, 0])).sum()
    # Every image that came back from the pool was one stored before this query
    # or stored earlier within the same query.
    seen = set(before.tolist()) | set(np.asarray(new[:, 0, 0, 0]).tolist())
    assert set(out.tolist()) <= seen
    after = np.asarray(pool.images[:, 0, 0, 0])
    slot_hits += after != before
  frac = returned_old / draws
  assert abs(frac - 0.5) < 0.03, frac  # 4000 draws: std of the fraction ~0.008.
  # Replacements land on every slot: with ~50 swaps per query over 10 slots each slot
  # changes in nearly every query.
  assert slot_hits.min() > 0.8 * slot_hits.mean()
  assert int(pool.count) == size


def test_replacement_swaps_exactly_one_slot():
  size = 4
  pool = image_pool.init_pool(size, (2, 2, 1))
  pool, _ = image_pool.query(pool, _images(0, size), jax.random.key(0))
  for seed in range(30):
    before = np.asarray(pool.images[:, 0, 0, 0])
    pool, out = image_pool.query(pool, _images(100 + seed, 1), jax.random.key(seed))
    after = np.asarray(pool.images[:, 0, 0, 0])
    changed = np.flatnonzero(after != before)
    if float(out[0, 0, 0, 0]) == 100 + seed:  # New image returned: pool untouched.
      assert changed.size == 0
    else:  # Old image returned, new one in its slot.
      assert changed.size == 1 and after[changed[0]] == 100 + seed
      assert before[changed[0]] == float(out[0, 0, 0, 0])


def test_swapped_slot_is_uniform():
  size, draws = 5, 1500
  pool = image_pool.init_pool(size, (2, 2, 1))
  pool, _ = image_pool.query(pool, _images(0, size), jax.random.key(0))
  query = jax.jit(image_pool.query)
  hits = np.zeros(size)
  for i, key in enumerate(jax.random.split(jax.random.key(7), draws)):
    before = np.asarray(pool.images[:, 0, 0, 0])
    pool, _ = query(pool, _images(100 + i, 1), key)
    hits += np.asarray(pool.images[:, 0, 0, 0]) != before
  # ~750 swaps over 5 slots: 150 each, std ~11; a biased index would miss badly.
  assert hits.sum() > 0.45 * draws and hits.sum() < 0.55 * draws
  np.testing.assert_allclose(hits / hits.sum(), np.full(size, 1 / size), atol=0.05)


def test_history_keeps_the_newest_images_and_fills_empty_slots_with_the_current():
  bank = image_pool.init_pool(4, (2, 2, 1))
  current = _images(10, 2)
  # Empty: every slot shows the current images, in turn.
  np.testing.assert_array_equal(
    image_pool.filled(bank, current)[:, 0, 0, 0], [10, 11, 10, 11]
  )
  bank = image_pool.push(bank, _images(0, 3))
  np.testing.assert_array_equal(
    image_pool.filled(bank, current)[:, 0, 0, 0], [0, 1, 2, 11]
  )
  bank = image_pool.push(bank, _images(3, 3))  # 3 fills the last slot; 4, 5 replace 0, 1.
  np.testing.assert_array_equal(
    image_pool.filled(bank, current)[:, 0, 0, 0], [4, 5, 2, 3]
  )
  assert image_pool.push(image_pool.init_pool(0, (2, 2, 1)), current).size == 0
