"""CycleGAN's losses, as the official code computes them (models/cycle_gan_model.py).

All reductions are means over every element, like `nn.MSELoss`, `nn.L1Loss` and
`nn.BCEWithLogitsLoss`, and are computed in float32 whatever the compute dtype.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

GAN_MODES = ('lsgan', 'vanilla')


def check_gan_mode(gan_mode: str) -> None:
  """Raises a one-line ValueError unless `gan_mode` is one of GAN_MODES."""
  if gan_mode not in GAN_MODES:
    raise ValueError(f'loss.gan_mode must be one of {GAN_MODES}, got {gan_mode!r}.')


def gan_loss(logits: jax.Array, target_is_real: bool, gan_mode: str) -> jax.Array:
  """The reference's `GANLoss`: MSE to 1/0 (lsgan) or BCE with logits (vanilla)."""
  logits = logits.astype(jnp.float32)
  target = jnp.full_like(logits, 1.0 if target_is_real else 0.0)
  if gan_mode == 'lsgan':
    return jnp.mean(jnp.square(logits - target))
  if gan_mode == 'vanilla':
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, target))
  raise ValueError(f'loss.gan_mode must be one of {GAN_MODES}, got {gan_mode!r}.')


def l1_loss(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean absolute error (the cycle and identity losses)."""
  return jnp.mean(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))


def discriminator_loss(
  real_logits: jax.Array, fake_logits: jax.Array, gan_mode: str
) -> jax.Array:
  """0.5 · (loss(D(real), 1) + loss(D(fake), 0)): the reference halves D's loss."""
  return 0.5 * (
    gan_loss(real_logits, True, gan_mode) + gan_loss(fake_logits, False, gan_mode)
  )


def discriminator_score(logits: jax.Array, gan_mode: str) -> jax.Array:
  """The critic's mean output for logging: raw for lsgan, a probability for vanilla."""
  logits = logits.astype(jnp.float32)
  return jnp.mean(jax.nn.sigmoid(logits) if gan_mode == 'vanilla' else logits)


def r1_penalty(
  critic: Callable[[jax.Array], jax.Array], real: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """The critic's logits on `real` and E‖∇_x Σ D(x)‖² over the batch (R1, unweighted).

  A PatchGAN scores patches: the gradient is that of the sum of its patch logits per
  image (one vjp, sharing the forward pass with the logits the loss uses).
  """
  logits, vjp = jax.vjp(critic, real)
  (grad,) = vjp(jnp.ones_like(logits))
  grad = grad.astype(jnp.float32)
  return logits, jnp.mean(jnp.sum(jnp.square(grad), axis=tuple(range(1, grad.ndim))))


def image_patches(images: jax.Array, patch_size: int) -> jax.Array:
  """[N, H, W, C] → [N·H'·W', C·k²]: every k×k patch (stride 1, no padding) as a row."""
  if patch_size == 1:
    return images.reshape(-1, images.shape[-1])
  patches = jax.lax.conv_general_dilated_patches(
    images,
    (patch_size, patch_size),
    (1, 1),
    'VALID',
    dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )
  return patches.reshape(-1, patches.shape[-1])


def sliced_transport(
  x: jax.Array,
  x_ref: jax.Array,
  y_ref: jax.Array,
  directions: jax.Array,
  power: int = 1,
) -> jax.Array:
  """Mean distance (`power` 1) or squared distance (2) the rows of `x` move under sliced
  optimal transport from the distribution of `x_ref`'s rows to `y_ref`'s, over the unit
  rows of `directions` [P, D].

  On each direction the 1-D optimal map is monotone: it takes the q-quantile of x_ref's
  projections to the q-quantile of y_ref's (linear in between). The map is held fixed
  (no gradient), so each row of `x` is pulled towards where it should go: with power
  1 equally hard from anywhere, with 2 the harder the further. With `x_ref` = `x` and
  `y_ref` as many rows, this is the sliced Wasserstein-1 distance (or Wasserstein-2
  squared) and its gradient; larger references give the map of whole domains rather
  than of one batch.
  """
  px = x.astype(jnp.float32) @ directions.T
  quantiles = lambda rows: jnp.sort(
    jax.lax.stop_gradient(rows.astype(jnp.float32)) @ directions.T, axis=0
  )
  transport = jax.vmap(jnp.interp, in_axes=(1, 1, 1), out_axes=1)
  target = transport(jax.lax.stop_gradient(px), quantiles(x_ref), quantiles(y_ref))
  gap = jnp.abs(px - target)
  return jnp.mean(gap if power == 1 else gap**power)


def random_directions(key: jax.Array, num: int, dim: int) -> jax.Array:
  """`num` directions drawn uniformly on the unit sphere of R^dim, as rows."""
  d = jax.random.normal(key, (num, dim), jnp.float32)
  return d / jnp.linalg.norm(d, axis=1, keepdims=True)


def patch_distribution_loss(
  fake: jax.Array,
  real: jax.Array,
  key: jax.Array,
  *,
  patch_size: int,
  levels: int,
  num_projections: int,
  fake_history: jax.Array | None = None,
  real_history: jax.Array | None = None,
  max_samples: int = 1024,
  power: int = 1,
) -> jax.Array:
  """How far the k×k patches of `fake` must move to be distributed as those of `real`.

  Sliced optimal transport (`sliced_transport`) of the patch sets, averaged over
  `levels` pyramid levels (each a 2×2 average of the one before): 1×1 patches compare
  colours, larger ones local texture (Pitié et al. 2005's colour transfer by random
  1-D projections; Heitz et al. 2021). With histories (earlier fakes and reals, [K, H,
  W, C] each), the map is that from all fakes to all reals, estimated from at most
  `max_samples` patches of each, so that one image is not pulled towards another's
  colours. Images and histories must have equal shapes.
  """
  if fake.shape != real.shape:
    raise ValueError(f'fake {fake.shape} and real {real.shape} differ in shape.')
  fake_ref, real_ref = fake, real
  if fake_history is not None:
    fake_ref = jnp.concatenate([fake, fake_history.astype(fake.dtype)])
    real_ref = jnp.concatenate([real, real_history.astype(real.dtype)])
  total = jnp.zeros((), jnp.float32)
  for level, k in enumerate(jax.random.split(key, levels)):
    if level:
      fake, fake_ref, real_ref = _half(fake), _half(fake_ref), _half(real_ref)
    key_dirs, key_f, key_r = jax.random.split(k, 3)
    dirs = random_directions(key_dirs, num_projections, fake.shape[-1] * patch_size**2)
    rows = lambda images: image_patches(images, patch_size)
    total += sliced_transport(
      rows(fake),
      _subsample(rows(fake_ref), max_samples, key_f),
      _subsample(rows(real_ref), max_samples, key_r),
      dirs,
      power,
    )
  return total / levels


def _subsample(rows: jax.Array, num: int, key: jax.Array) -> jax.Array:
  """`num` rows drawn with replacement, or all of them when there are no more."""
  if rows.shape[0] <= num:
    return rows
  return rows[jax.random.randint(key, (num,), 0, rows.shape[0])]


def _half(images: jax.Array) -> jax.Array:
  """A 2×2 average pool (odd sizes drop their last row/column)."""
  n, h, w, c = images.shape
  images = images[:, : h // 2 * 2, : w // 2 * 2]
  return images.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
