"""pix2pix (Isola et al. 2017), the official codebase's other method: paired translation.

As the reference's `Pix2PixModel`: one generator G maps the source side to the target
side (`config.direction`; 'BtoA' reads domain B's images as real_A), one critic D judges
the concatenation (real_A, B) on channels, real or fake. The step is its
`optimize_parameters`: fake_B = G(real_A) once; D on (real_A, detached fake_B) and
(real_A, real_B), loss_D = 0.5 (fake + real), one Adam step; then G with D's new
weights: loss_G = GAN(D(real_A, fake_B), real) + lambda_L1 |fake_B - real_B|₁. No image
pool. Every forward runs in train mode, so each updates its batch norms' running
statistics (D's three times a step, G's once), with the statistics of the global batch
across devices (the reference's `--norm syncbatch`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.methods import base
from cyclegan_jax.methods import cycle_gan
from cyclegan_jax.methods import losses
from cyclegan_jax.methods import one_way
from cyclegan_jax.methods import step_parts
from cyclegan_jax.nets import models

PyTree = Any
NAME = 'pix2pix'
GENERATORS = ('G',)
# The reference's loss names (its `loss_names`), logged and shown on the console.
CONSOLE_TERMS = ('G_GAN', 'G_L1', 'D_real', 'D_fake')
# Folded into the per-device key for the generator's dropout masks.
_DROPOUT_STREAM = 0x64726F70


# --------------------------------------------------------------------------------------
# Networks and state
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Networks:
  """The static half of training: modules (no `axis_name`), optimisers, settings."""

  generator: nn.Module
  discriminator: nn.Module
  tx_g: optax.GradientTransformation
  tx_d: optax.GradientTransformation
  schedule: optax.Schedule
  loss: ml_collections.FrozenConfigDict
  direction: str = 'AtoB'  # 'BtoA': G reads domain B and writes domain A.
  source_channels: int = 3  # Of the images G reads (D reads these and G's output).
  ema_decay: float = 0.0
  ema_start_step: int = 0
  method: str = NAME


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a pytree of global arrays."""

  step: jax.Array  # int32 scalar, replicated.
  params: dict[str, PyTree]  # {'G', 'D'}, replicated.
  # {'G', 'D'}: the batch norms' running statistics, replicated ({} for a net without).
  batch_stats: dict[str, PyTree]
  opt_state_G: optax.OptState  # noqa: N815  # The reference's optimizer_G.
  opt_state_D: optax.OptState  # noqa: N815
  rng: jax.Array  # [devices, 2] uint32 key data; per device, sharded.
  ema: dict[str, PyTree] = dataclasses.field(default_factory=dict)  # {'G'} or {}.


def create_networks(
  config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> Networks:
  """pix2pix's networks, optimisers and loss settings from `config`."""
  losses.check_gan_mode(config.loss.gan_mode)
  check_options(config)
  adam = lambda rate: optax.adam(rate, b1=config.optim.beta1, b2=config.optim.beta2)
  direction = one_way.config_direction(config)
  source = one_way.sides(direction)[0]
  discriminator = models.discriminator_from_config(config.model)
  if hasattr(discriminator, 'num_layers'):  # A PatchGAN (the PixelGAN fits any size).
    cycle_gan.check_discriminator_fits(discriminator, config.crop_size)
  return Networks(
    generator=one_way.generators_from_config(config.model, direction=direction)['G'],
    discriminator=discriminator,
    tx_g=adam(schedule),
    tx_d=adam(step_parts.scaled_schedule(schedule, config.optim.lr_D_scale)),
    schedule=schedule,
    loss=ml_collections.FrozenConfigDict(config.loss),
    direction=direction,
    source_channels=channels_lib.domain_channels(config.model)[source],
    ema_decay=float(config.ema.decay) if 'ema' in config else 0.0,
    ema_start_step=int(config.ema.start_step) if 'ema' in config else 0,
  )


# CycleGAN's options the pix2pix step has no place for: (field, its off value, why).
_UNSUPPORTED = (
  ('model.spectral_norm_D', False, "the critic's batch norms hold its statistics"),
  ('loss.r1_gamma', 0.0, 'the official pix2pix has no R1 penalty'),
  ('loss.lambda_swd', 0.0, 'the patch-distribution loss is CycleGAN-only here'),
  ('augment.policy', '', 'DiffAugment is CycleGAN-only here'),
)


def check_options(config: ml_collections.ConfigDict) -> None:
  """Raises a one-line ValueError for a CycleGAN-only option that is on, or remat for
  a U-Net (it has no residual blocks to recompute)."""
  if config.model.get('remat') and config.model.netG.startswith('unet'):
    raise ValueError(
      f'model.remat=True recomputes residual blocks, which {config.model.netG} has '
      'none of: drop it (a U-Net keeps every activation for its skips anyway).'
    )
  for field, off, why in _UNSUPPORTED:
    group, name = field.split('.')
    if group in config and config[group].get(name, off) != off:
      raise ValueError(
        f'{field}={config[group][name]!r} does not apply to method=pix2pix ({why}): '
        f'drop the override or pass --config.{field}={off!r}.'
      )


def init_variables(
  networks: Networks, key: jax.Array, image_shape: tuple[int, int, int]
) -> tuple[dict[str, PyTree], dict[str, PyTree]]:
  """(params {'G', 'D'}, batch_stats {'G', 'D'}, {} for a net without batch norm) for
  images of `image_shape`'s size."""
  h, w = image_shape[:2]
  c_in, c_out = networks.source_channels, networks.generator.output_channels
  key_g, key_d = jax.random.split(key)
  g = networks.generator.init(key_g, jnp.zeros((1, h, w, c_in), jnp.float32))
  d = networks.discriminator.init(key_d, jnp.zeros((1, h, w, c_in + c_out), jnp.float32))
  params = {'G': g['params'], 'D': d['params']}
  return params, {'G': g.get('batch_stats', {}), 'D': d.get('batch_stats', {})}


def init_state(
  networks: Networks,
  *,
  params_key: jax.Array,
  rng: jax.Array,
  image_shape: tuple[int, int, int],
  pool_size: int,
  num_devices: int,
) -> TrainState:
  """The state before any step (`base.Method.init_state`); pix2pix keeps no pool."""
  del pool_size, num_devices
  params, stats = init_variables(networks, params_key, image_shape)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats=stats,
    opt_state_G=networks.tx_g.init(params['G']),
    opt_state_D=networks.tx_d.init(params['D']),
    rng=rng,
    ema=step_parts.initial_ema(params, GENERATORS) if networks.ema_decay > 0 else {},
  )


# --------------------------------------------------------------------------------------
# The per-device step
# --------------------------------------------------------------------------------------


def with_axis(module: nn.Module, axis_name: str | None) -> nn.Module:
  """`module` with its batch norms' statistics taken over `axis_name` (where it has
  that field): the global batch's, as the reference's SyncBatchNorm."""
  if 'axis_name' not in {f.name for f in dataclasses.fields(module)}:
    return module
  return module.clone(axis_name=axis_name)


def critic_input(real_a: jax.Array, b: jax.Array) -> jax.Array:
  """What D judges: the condition and an image of the target side, on channels."""
  return jnp.concatenate([real_a, b.astype(real_a.dtype)], axis=-1)


def discriminator_losses(
  d_params: PyTree,
  d_stats: PyTree,
  real_a: jax.Array,
  real_b: jax.Array,
  fake_b: jax.Array,
  *,
  critic: nn.Module,
  gan_mode: str,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], PyTree]]:
  """The reference's `backward_D`: (loss_D, (terms, D's statistics after both
  forwards, the fake one first))."""
  dis = functools.partial(
    step_parts.apply_net, critic, d_params, batch_statistics=True, update_stats=True
  )
  pred_fake, d_stats = dis(d_stats, critic_input(real_a, fake_b))
  pred_real, d_stats = dis(d_stats, critic_input(real_a, real_b))
  terms = {
    'D_fake': losses.gan_loss(pred_fake, False, gan_mode),
    'D_real': losses.gan_loss(pred_real, True, gan_mode),
  }
  return (terms['D_fake'] + terms['D_real']) * 0.5, (terms, d_stats)


def generator_losses(
  fake_b: jax.Array,
  d_params: PyTree,
  d_stats: PyTree,
  real_a: jax.Array,
  real_b: jax.Array,
  *,
  critic: nn.Module,
  loss: Any,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], PyTree]]:
  """The reference's `backward_G` as a function of fake_B: (loss_G, (terms, D's
  statistics after its train-mode forward))."""
  pred_fake, d_stats = step_parts.apply_net(
    critic,
    d_params,
    d_stats,
    critic_input(real_a, fake_b),
    batch_statistics=True,
    update_stats=True,
  )
  terms = {
    'G_GAN': losses.gan_loss(pred_fake, True, loss.gan_mode),
    'G_L1': losses.l1_loss(fake_b, real_b) * loss.lambda_L1,
  }
  return terms['G_GAN'] + terms['G_L1'], (terms, d_stats)


def dropout_key(state: TrainState, axis_name: str | None) -> jax.Array:
  """This step's and device's dropout key: every device's rows get their own masks."""
  return step_parts.stream_key(state.step, state.rng, axis_name, _DROPOUT_STREAM)


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  networks: Networks,
  axis_name: str | None = step_parts.AXIS,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One pix2pix iteration on this device's shard of the pairs (`optimize_parameters`).

  G runs forward once (its pullback gives G's gradients from dL/dfake_B); D is updated
  on the detached fake and the real pair, then G's loss reads D's new weights.
  Gradients and metrics are averaged over `axis_name` (None: one device).
  """
  mean, local = step_parts.replica_ops(axis_name)
  source, target = one_way.sides(networks.direction)
  real_a, real_b = batch[source], batch[target]
  generator = with_axis(networks.generator, axis_name)
  critic = with_axis(networks.discriminator, axis_name)

  forward = lambda p: step_parts.apply_net(
    generator,
    p,
    state.batch_stats['G'],
    real_a,
    batch_statistics=True,
    dropout_key=dropout_key(state, axis_name),
    update_stats=True,
  )
  fake_b, pullback, g_stats = jax.vjp(forward, local(state.params['G']), has_aux=True)

  d_grads, (d_terms, d_stats) = jax.grad(discriminator_losses, has_aux=True)(
    local(state.params['D']),
    state.batch_stats['D'],
    real_a,
    real_b,
    jax.lax.stop_gradient(fake_b),
    critic=critic,
    gan_mode=networks.loss.gan_mode,
  )
  new_d, opt_state_d = step_parts.apply_updates(
    networks.tx_d, state.params['D'], state.opt_state_D, mean(d_grads)
  )

  d_fake, (g_terms, d_stats) = jax.grad(generator_losses, has_aux=True)(
    fake_b, new_d, d_stats, real_a, real_b, critic=critic, loss=networks.loss
  )
  (g_grads,) = pullback(d_fake)
  new_g, opt_state_g = step_parts.apply_updates(
    networks.tx_g, state.params['G'], state.opt_state_G, mean(g_grads)
  )

  metrics = mean({**g_terms, **d_terms})
  metrics['learning_rate'] = networks.schedule(state.step)
  params = {'G': new_g, 'D': new_d}
  ema = step_parts.update_ema(
    state.ema,
    params,
    state.step + 1,
    decay=networks.ema_decay,
    start_step=networks.ema_start_step,
  )
  new_state = state.replace(
    step=state.step + 1,
    params=params,
    batch_stats={'G': g_stats, 'D': d_stats},
    opt_state_G=opt_state_g,
    opt_state_D=opt_state_d,
    ema=ema,
  )
  return new_state, metrics


def _missing_hint(name: str, direction: str) -> str:
  del name
  return (
    f'a pix2pix model translates the one direction it was trained for: pass '
    f'--direction={direction}'
  )


METHOD = base.Method(
  name=NAME,
  create_networks=create_networks,
  init_state=init_state,
  train_step=train_step,
  per_device_fields=('rng',),
  generators=GENERATORS,
  directions={'AtoB': ('G', None)},
  generator_modules=one_way.generators_from_config,
  console_terms=CONSOLE_TERMS,
  missing_hint=_missing_hint,
  configure_fn=one_way.configure,
)
