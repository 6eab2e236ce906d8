"""BiGAN / ALI (Donahue et al. 2017; Dumoulin et al. 2017) as the CycleGAN paper adapted it.

BiGAN and ALI learn a generator z → x together with its inverse x → z against one
critic that judges joint pairs: (x, E(x)) against (G(z), z). Zhu et al. 2017 (§5.1.2)
"implement the same objective for mapping a source image x to a target image y": G: A →
B and F: B → A, and one critic D on the pair concatenated on channels (A's channels
first), trained to tell (F(y), y) (labelled real) from (x, G(x)) (labelled fake); G and
F are trained with the labels swapped. Nothing ties F(G(x)) to x: that is the cycle
loss BiGAN lacks.

CycleGAN's networks and details: ResNet generators, the 70×70 PatchGAN (its input has
input_nc + output_nc channels, as pix2pix's conditional critic), LSGAN, one Adam for G
and F and one for D, the linear-decay schedule, and CycleGAN's order: the generators
first with D fixed, then D on pairs made before their update, drawn through two image
pools of joint pairs (both sides of D's game are generated, so both keep a history).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.methods import base
from cyclegan_jax.methods import image_pool
from cyclegan_jax.methods import losses
from cyclegan_jax.methods import regularized_gan
from cyclegan_jax.methods import step_parts
from cyclegan_jax.nets import models

PyTree = Any
NAME = 'bigan'
GENERATORS = ('G', 'F')
# (forward, backward): F maps back, so sample grids show F(G(x)), untrained as it is.
DIRECTIONS = {'AtoB': ('G', 'F'), 'BtoA': ('F', 'G')}
CONSOLE_TERMS = ('G_GAN', 'F_GAN', 'loss_D')
# Pool keys: D's "real" pairs (F(y), y) and "fake" pairs (x, G(x)).
POOLS = ('real', 'fake')


@dataclasses.dataclass(frozen=True)
class Networks:
  """The static half of training: modules, optimisers, schedule and loss settings."""

  generator: nn.Module  # G: A → B.
  generator_f: nn.Module  # F: B → A.
  discriminator: nn.Module  # D: (an A image, a B image) on channels.
  tx_g: optax.GradientTransformation  # One Adam for G and F together.
  tx_d: optax.GradientTransformation
  schedule: optax.Schedule
  gan_mode: str
  ema_decay: float = 0.0
  ema_start_step: int = 0
  method: str = NAME


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a pytree of global arrays."""

  step: jax.Array  # int32 scalar, replicated.
  params: dict[str, PyTree]  # {'G', 'F', 'D'}, replicated.
  opt_state_g: optax.OptState  # G and F's Adam, replicated.
  opt_state_d: optax.OptState
  pools: dict[str, image_pool.ImagePool]  # POOLS of joint pairs; per device, sharded.
  rng: jax.Array  # [devices, 2] uint32 key data; per device, sharded.
  ema: dict[str, PyTree] = dataclasses.field(default_factory=dict)  # {'G', 'F'} or {}.


def generators_from_config(
  model_config: Any, backend: str | None = None
) -> dict[str, nn.Module]:
  """{'G': A → B, 'F': B → A}."""
  nc = channels_lib.domain_channels(model_config)
  return {
    'G': models.generator_from_config(model_config, nc['B'], backend),
    'F': models.generator_from_config(model_config, nc['A'], backend),
  }


def create_networks(
  config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> Networks:
  """BiGAN's networks, optimisers and loss settings from `config`."""
  losses.check_gan_mode(config.loss.gan_mode)
  regularized_gan.check_options(config, NAME)
  generators = generators_from_config(config.model)
  rate_d = step_parts.scaled_schedule(schedule, config.optim.lr_D_scale)
  return Networks(
    generator=generators['G'],
    generator_f=generators['F'],
    discriminator=regularized_gan.critic_from_config(config),
    tx_g=regularized_gan.adam(config, schedule),
    tx_d=regularized_gan.adam(config, rate_d),
    schedule=schedule,
    gan_mode=config.loss.gan_mode,
    ema_decay=float(config.ema.decay) if 'ema' in config else 0.0,
    ema_start_step=int(config.ema.start_step) if 'ema' in config else 0,
  )


def joint(a: jax.Array, b: jax.Array) -> jax.Array:
  """What D judges: an A image and a B image on channels, A's first."""
  return jnp.concatenate([a, b.astype(a.dtype)], axis=-1)


def init_state(
  networks: Networks,
  *,
  params_key: jax.Array,
  rng: jax.Array,
  image_shape: tuple[int, int, int],
  pool_size: int,
  num_devices: int,
) -> TrainState:
  """The state before any step (`base.Method.init_state`)."""
  h, w, c_a = image_shape
  c_b = networks.generator.output_channels
  key_g, key_f, key_d = jax.random.split(params_key, 3)
  zeros = lambda c: jnp.zeros((1, h, w, c), jnp.float32)
  params = {
    'G': networks.generator.init(key_g, zeros(c_a))['params'],
    'F': networks.generator_f.init(key_f, zeros(c_b))['params'],
    'D': networks.discriminator.init(key_d, zeros(c_a + c_b))['params'],
  }
  pools = step_parts.per_device_copies(
    {k: image_pool.init_pool(pool_size, (h, w, c_a + c_b)) for k in POOLS}, num_devices
  )
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state_g=networks.tx_g.init({k: params[k] for k in GENERATORS}),
    opt_state_d=networks.tx_d.init(params['D']),
    pools=pools,
    rng=rng,
    ema=step_parts.initial_ema(params, GENERATORS) if networks.ema_decay > 0 else {},
  )


# --------------------------------------------------------------------------------------
# Losses and the per-device step
# --------------------------------------------------------------------------------------


def generator_terms(
  pred_fake: jax.Array, pred_real: jax.Array, gan_mode: str
) -> dict[str, jax.Array]:
  """G and F's terms, D's labels swapped: G wants (x, G(x)) judged real, F wants (F(y),
  y) judged fake."""
  return {
    'G_GAN': losses.gan_loss(pred_fake, True, gan_mode),
    'F_GAN': losses.gan_loss(pred_real, False, gan_mode),
  }


def critic_terms(
  pred_real: jax.Array, pred_fake: jax.Array, gan_mode: str
) -> dict[str, jax.Array]:
  """D's halved loss, (F(y), y) real and (x, G(x)) fake, with its mean scores."""
  return regularized_gan.critic_terms(pred_real, pred_fake, gan_mode)


def generator_loss(
  g_params: dict[str, PyTree],
  d_params: PyTree,
  real_a: jax.Array,
  real_b: jax.Array,
  *,
  networks: Networks,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, jax.Array]]]:
  """G and F's objective with D fixed: (loss, (terms, {'real', 'fake'} joint pairs))."""
  fake_b = networks.generator.apply({'params': g_params['G']}, real_a)
  fake_a = networks.generator_f.apply({'params': g_params['F']}, real_b)
  pairs = {'real': joint(fake_a, real_b), 'fake': joint(real_a, fake_b)}
  critic = lambda x: networks.discriminator.apply({'params': d_params}, x)
  terms = generator_terms(critic(pairs['fake']), critic(pairs['real']), networks.gan_mode)
  terms['loss_G'] = terms['G_GAN'] + terms['F_GAN']
  return terms['loss_G'], (terms, pairs)


def critic_loss(
  d_params: PyTree, pairs: dict[str, jax.Array], *, networks: Networks
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """D's objective on (pooled) joint pairs: (loss, terms)."""
  critic = lambda x: networks.discriminator.apply({'params': d_params}, x)
  terms = critic_terms(critic(pairs['real']), critic(pairs['fake']), networks.gan_mode)
  return terms['loss_D'], terms


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  networks: Networks,
  axis_name: str | None = step_parts.AXIS,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One BiGAN iteration on this device's shard: G and F with D fixed, then D on the
  pairs made before their update, drawn through the pools.

  Gradients and metrics are averaged over `axis_name` (None: one device).
  """
  mean, local = step_parts.replica_ops(axis_name)
  g_params = {k: state.params[k] for k in GENERATORS}
  g_grads, (g_terms, pairs) = jax.grad(generator_loss, has_aux=True)(
    local(g_params),
    local(state.params['D']),
    batch['A'],
    batch['B'],
    networks=networks,
  )
  new_g, opt_state_g = step_parts.apply_updates(
    networks.tx_g, g_params, state.opt_state_g, mean(g_grads)
  )

  rng, pools, pooled = regularized_gan.query_pools(state, {k: pairs[k] for k in POOLS})
  d_grads, d_terms = jax.grad(critic_loss, has_aux=True)(
    local(state.params['D']), pooled, networks=networks
  )
  new_d, opt_state_d = step_parts.apply_updates(
    networks.tx_d, state.params['D'], state.opt_state_d, mean(d_grads)
  )

  params = {**new_g, 'D': new_d}
  metrics, ema = regularized_gan.metrics_and_ema(
    state, networks, params, {**g_terms, **d_terms}, mean
  )
  new_state = state.replace(
    step=state.step + 1,
    params=params,
    opt_state_g=opt_state_g,
    opt_state_d=opt_state_d,
    pools=pools,
    rng=rng,
    ema=ema,
  )
  return new_state, metrics


METHOD = base.Method(
  name=NAME,
  create_networks=create_networks,
  init_state=init_state,
  train_step=train_step,
  per_device_fields=('pools', 'rng'),
  generators=GENERATORS,
  directions=DIRECTIONS,
  generator_modules=generators_from_config,
  console_terms=CONSOLE_TERMS,
)
