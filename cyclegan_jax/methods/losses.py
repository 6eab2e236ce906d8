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


def sliced_transport(
  x: jax.Array, x_ref: jax.Array, y_ref: jax.Array, directions: jax.Array
) -> jax.Array:
  """Mean distance the rows of `x` move under sliced optimal transport from the
  distribution of `x_ref`'s rows to `y_ref`'s, over the unit rows of `directions` [P, D].

  On each direction the 1-D optimal map is monotone: it takes the q-quantile of x_ref's
  projections to the q-quantile of y_ref's (linear in between). The map is held fixed
  (no gradient), so each row of `x` is pulled towards where it should go, equally hard
  from anywhere. With `x_ref` = `x` and `y_ref` as many rows, this is the sliced
  Wasserstein-1 distance and its gradient; larger references give the map of whole
  domains rather than of one batch.
  """
  px = x.astype(jnp.float32) @ directions.T
  quantiles = lambda rows: jnp.sort(
    jax.lax.stop_gradient(rows.astype(jnp.float32)) @ directions.T, axis=0
  )
  transport = jax.vmap(jnp.interp, in_axes=(1, 1, 1), out_axes=1)
  target = transport(jax.lax.stop_gradient(px), quantiles(x_ref), quantiles(y_ref))
  return jnp.mean(jnp.abs(px - target))


def random_directions(key: jax.Array, num: int, dim: int) -> jax.Array:
  """`num` directions drawn uniformly on the unit sphere of R^dim, as rows."""
  d = jax.random.normal(key, (num, dim), jnp.float32)
  return d / jnp.linalg.norm(d, axis=1, keepdims=True)


def colour_distribution_loss(
  fake: jax.Array,
  real: jax.Array,
  key: jax.Array,
  *,
  num_projections: int,
  fake_history: jax.Array | None = None,
  real_history: jax.Array | None = None,
  max_samples: int = 1024,
) -> jax.Array:
  """How far the colours of `fake` must move to be distributed as those of `real`.

  Sliced optimal transport (`sliced_transport`) of the pixels' colours (Pitié et al.
  2005's colour transfer by random 1-D projections). With histories (earlier fakes and
  reals, [K, H, W, C] each), the map is that from all fakes to all reals, estimated from
  at most `max_samples` pixels of each, so that one image is not pulled towards
  another's colours. Images and histories must have equal shapes.
  """
  if fake.shape != real.shape:
    raise ValueError(f'fake {fake.shape} and real {real.shape} differ in shape.')
  fake_ref, real_ref = fake, real
  if fake_history is not None:
    fake_ref = jnp.concatenate([fake, fake_history.astype(fake.dtype)])
    real_ref = jnp.concatenate([real, real_history.astype(real.dtype)])
  # The one-level split of the former pyramid loss: the same draws as runs before.
  key_dirs, key_f, key_r = jax.random.split(jax.random.split(key, 1)[0], 3)
  dirs = random_directions(key_dirs, num_projections, fake.shape[-1])
  rows = lambda images: images.reshape(-1, images.shape[-1])
  return sliced_transport(
    rows(fake),
    _subsample(rows(fake_ref), max_samples, key_f),
    _subsample(rows(real_ref), max_samples, key_r),
    dirs,
  )


def _subsample(rows: jax.Array, num: int, key: jax.Array) -> jax.Array:
  """`num` rows drawn with replacement, or all of them when there are no more."""
  if rows.shape[0] <= num:
    return rows
  return rows[jax.random.randint(key, (num,), 0, rows.shape[0])]
