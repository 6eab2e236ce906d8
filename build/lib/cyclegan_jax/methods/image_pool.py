"""The image history buffer of Shrivastava et al. (2017), as pure functions over arrays.

The reference (util/image_pool.py) answers each query image in turn: while the pool is
not full, store it and return it; once full, with probability 0.5 return a random stored
image and store the new one in its place, else return the new image. Here the pool is an
array in the train state; each device keeps its own pool (sharded on `data`) and draws
with its own key, as each process of the reference's DataParallel would.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class ImagePool:
  images: jax.Array  # [pool_size, H, W, C]; only the first `count` entries are valid.
  count: jax.Array  # int32 scalar: stored images so far (saturates at pool_size).

  @property
  def size(self) -> int:
    return self.images.shape[0]


def init_pool(pool_size: int, image_shape: tuple[int, int, int]) -> ImagePool:
  """An empty pool; `pool_size == 0` gives a pool that passes images through."""
  return ImagePool(
    images=jnp.zeros((pool_size, *image_shape), jnp.float32),
    count=jnp.zeros((), jnp.int32),
  )


def _query_one(
  pool: ImagePool,
  image: jax.Array,
  key: jax.Array,
) -> tuple[ImagePool, jax.Array]:
  key_coin, key_index = jax.random.split(key)
  not_full = pool.count < pool.size
  swap = jax.random.uniform(key_coin) > 0.5
  random_index = jax.random.randint(key_index, (), 0, pool.size)
  index = jnp.where(not_full, pool.count, random_index)
  stored = pool.images[index]
  returned = jnp.where(~not_full & swap, stored, image)
  write = not_full | swap
  images = pool.images.at[index].set(jnp.where(write, image, stored))
  return ImagePool(images=images, count=jnp.minimum(pool.count + 1, pool.size)), returned


def query(
  pool: ImagePool,
  images: jax.Array,
  key: jax.Array,
) -> tuple[ImagePool, jax.Array]:
  """Answers a batch of images in order, as the reference's `ImagePool.query`.

  Args:
    pool: this device's pool.
    images: [B, H, W, C] fakes just made by a generator.
    key: a PRNG key for this query.

  Returns:
    (updated pool, [B, H, W, C] images for the discriminator).
  """
  if pool.size == 0:
    return pool, images

  def body(pool, xs):
    image, k = xs
    return _query_one(pool, image.astype(jnp.float32), k)

  keys = jax.random.split(key, images.shape[0])
  pool, returned = jax.lax.scan(body, pool, (images, keys))
  return pool, returned.astype(images.dtype)


def push(bank: ImagePool, images: jax.Array) -> ImagePool:
  """A first-in-first-out history: `images` [B, H, W, C] replace the oldest entries."""
  if bank.size == 0:
    return bank
  index = (bank.count + jnp.arange(images.shape[0])) % bank.size
  return ImagePool(
    images=bank.images.at[index].set(images.astype(bank.images.dtype)),
    count=bank.count + images.shape[0],
  )


def filled(bank: ImagePool, images: jax.Array) -> jax.Array:
  """The bank's images, its empty slots filled with copies of `images` [B, H, W, C].

  A real and a fake bank pushed in step fill alike, so before they are full the
  comparison between them is still one between equal numbers of images.
  """
  copies = images[jnp.arange(bank.size) % images.shape[0]].astype(bank.images.dtype)
  stored = (jnp.arange(bank.size) < bank.count)[:, None, None, None]
  return jnp.where(stored, bank.images, copies)
