"""CycleGAN (Zhu et al. 2017), the first method: two generators, two critics, cycles.

The reference's naming: G_A maps A→B and D_A judges domain B; G_B maps B→A and D_B
judges domain A. One Adam updates both generators, another both critics. The step is
the reference's `optimize_parameters`: generators first with the critics fixed, then
both critics on fakes drawn through the image pools. Options: identity loss, R1,
DiffAugment, spectral norm (critic 'batch_stats'), TTUR, the patch-distribution loss
with image banks, and the generators' weight average (EMA).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.methods import base
from cyclegan_jax.methods import diffaugment
from cyclegan_jax.methods import image_pool
from cyclegan_jax.methods import losses
from cyclegan_jax.methods import step_parts
from cyclegan_jax.nets import models

PyTree = Any
NAME = 'cycle_gan'
GENERATORS = ('G_A', 'G_B')
DISCRIMINATORS = ('D_A', 'D_B')
# (forward, backward): each direction's generator and the one that cycles back.
DIRECTIONS = {'AtoB': ('G_A', 'G_B'), 'BtoA': ('G_B', 'G_A')}
# The console line: the terms a user watches, in this order, where the run has them.
CONSOLE_TERMS = (
  'loss_G',
  'loss_D_A',
  'loss_D_B',
  'loss_cycle_A',
  'loss_cycle_B',
  'loss_idt_A',
  'loss_idt_B',
  'loss_swd_A',
  'loss_swd_B',
)


# --------------------------------------------------------------------------------------
# Networks and state
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Networks:
  """The static half of training: modules, optimisers, schedule and loss settings."""

  generator: nn.Module
  discriminator: nn.Module
  tx_g: optax.GradientTransformation
  tx_d: optax.GradientTransformation
  schedule: optax.Schedule  # The generators' rate (the critics' is lr_D_scale × it).
  loss: ml_collections.FrozenConfigDict
  lr_D_scale: float = 1.0
  augment: tuple[str, ...] = ()  # DiffAugment's operations on the critics' inputs.
  ema_decay: float = 0.0  # config.ema.decay; 0: no average kept.
  ema_start_step: int = 0  # config.ema.start_step.
  # G_B's module where its output channels differ from G_A's (model.input_nc !=
  # model.output_nc); None: G_B is `generator` too.
  generator_b: nn.Module | None = None
  method: str = NAME  # The registry name (base.Networks).

  def generator_for(self, name: str) -> nn.Module:
    """The module of generator 'G_A' (A→B) or 'G_B' (B→A)."""
    return self.generator_b if name == 'G_B' and self.generator_b else self.generator


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a pytree of global arrays."""

  step: jax.Array  # int32 scalar, replicated.
  params: dict[str, PyTree]  # {'G_A', 'G_B', 'D_A', 'D_B'}, replicated.
  opt_state_g: optax.OptState  # one Adam for both generators, replicated.
  opt_state_d: optax.OptState  # one Adam for both discriminators, replicated.
  # {'D_A', 'D_B'}: the critics' spectral-norm `u` vectors ('batch_stats'), replicated;
  # {} without spectral norm.
  critic_stats: dict[str, PyTree]
  pools: dict[str, image_pool.ImagePool]  # {'A', 'B'} fakes; per device, sharded.
  rng: jax.Array  # [devices, 2] uint32 key data; per device, sharded.
  # {'G_A', 'G_B'}: the generators' exponential moving average, replicated; {} when off.
  ema: dict[str, PyTree] = dataclasses.field(default_factory=dict)
  # {'real_A', 'fake_A', 'real_B', 'fake_B'}: recent images the patch-distribution loss
  # compares (loss.swd_bank of each per device), sharded; {} when off.
  banks: dict[str, image_pool.ImagePool] = dataclasses.field(default_factory=dict)


def generators_from_config(
  model_config: Any, backend: str | None = None
) -> dict[str, models.ResnetGenerator]:
  """{'G_A': A→B, 'G_B': B→A}: the same network but for its output channels, its
  conv forms resolved for `backend` (`models.conv_impl_from_config`).

  Where both domains have the same channels, 'G_B' is the same module object as 'G_A'
  (so a program compiled for one serves both).
  """
  nc = channels_lib.domain_channels(model_config)
  g_a = models.generator_from_config(model_config, nc['B'], backend)
  if nc['A'] == nc['B']:
    return {'G_A': g_a, 'G_B': g_a}
  return {
    'G_A': g_a,
    'G_B': models.generator_from_config(model_config, nc['A'], backend),
  }


def create_networks(
  config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> Networks:
  """CycleGAN's networks, optimisers and loss settings from `config`.

  `schedule` is the generators' learning rate (the critics' is lr_D_scale × it).
  """
  losses.check_gan_mode(config.loss.gan_mode)

  check_options(config.model)

  def adam(rate: optax.Schedule):
    return optax.adam(rate, b1=config.optim.beta1, b2=config.optim.beta2)

  discriminator = models.discriminator_from_config(config.model)
  check_discriminator_fits(discriminator, config.crop_size)

  generators = generators_from_config(config.model)
  return Networks(
    generator=generators['G_A'],
    discriminator=discriminator,
    tx_g=adam(schedule),
    tx_d=adam(step_parts.scaled_schedule(schedule, config.optim.lr_D_scale)),
    schedule=schedule,
    loss=ml_collections.FrozenConfigDict(config.loss),
    lr_D_scale=config.optim.lr_D_scale,
    augment=diffaugment.parse_policy(config.augment.policy),
    ema_decay=float(config.ema.decay) if 'ema' in config else 0.0,
    ema_start_step=int(config.ema.start_step) if 'ema' in config else 0,
    generator_b=(
      None
      if generators['G_B'].output_channels == generators['G_A'].output_channels
      else generators['G_B']
    ),
  )


def check_options(model_config: Any) -> None:
  """Raises a one-line ValueError for the pix2pix options the CycleGAN step cannot
  train: batch norm (running statistics) and dropout (its keys)."""
  refused = {
    'model.norm': ('batch', model_config.get('norm', 'instance') == 'batch'),
    'model.norm_D': ('batch', model_config.get('norm_D', 'instance') == 'batch'),
    'model.use_dropout': (True, bool(model_config.get('use_dropout', False))),
  }
  for field, (value, on) in refused.items():
    if on:
      raise ValueError(
        f'{field}={value!r} is pix2pix-only: the CycleGAN step keeps no batch-norm '
        'statistics or dropout keys; use --config.method=pix2pix, or drop the override.'
      )


def check_discriminator_fits(discriminator: nn.Module, crop_size: int) -> None:
  """A PatchGAN needs a minimum input size; below it its output is empty (NaN losses)."""

  def out_size(size):
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    return jax.eval_shape(discriminator.init_with_output, jax.random.key(0), x)[0].shape[
      1
    ]

  if out_size(crop_size) < 1:
    smallest = next(s for s in range(crop_size, 4096) if out_size(s) >= 1)
    raise ValueError(
      f'crop_size={crop_size} is too small for the {discriminator.num_layers}-layer '
      f'PatchGAN (its output would be empty): use crop_size >= {smallest}, or a '
      f'shallower critic (--config.model.netD=n_layers --config.model.n_layers_D=2).'
    )


def domain_shapes(
  image_shape: tuple[int, int, int], networks: Networks
) -> dict[str, tuple[int, int, int]]:
  """{'A': shape, 'B': shape}: `image_shape` is domain A's; B's channels are G_A's output.

  Lets callers keep passing one (H, W, C) shape, as they did when both domains were RGB.
  """
  return {
    'A': tuple(image_shape),
    'B': (*image_shape[:2], networks.generator_for('G_A').output_channels),
  }


def init_variables(
  networks: Networks, key: jax.Array, image_shape: tuple[int, int, int]
) -> tuple[dict[str, PyTree], dict[str, PyTree]]:
  """(params of the four networks, the critics' 'batch_stats' or {}) for images of
  domain A's `image_shape`."""
  shapes = domain_shapes(image_shape, networks)
  dummy = {d: jnp.zeros((1, *shape), jnp.float32) for d, shape in shapes.items()}
  keys = jax.random.split(key, 4)
  init_g = lambda name, k, x: networks.generator_for(name).init(k, x)['params']
  # G_A reads A, G_B reads B; D_A judges B images, D_B judges A images.
  d_a = networks.discriminator.init(keys[2], dummy['B'])
  d_b = networks.discriminator.init(keys[3], dummy['A'])
  params = {
    'G_A': init_g('G_A', keys[0], dummy['A']),
    'G_B': init_g('G_B', keys[1], dummy['B']),
    'D_A': d_a['params'],
    'D_B': d_b['params'],
  }
  if 'batch_stats' not in d_a:
    return params, {}
  return params, {'D_A': d_a['batch_stats'], 'D_B': d_b['batch_stats']}


def init_params(
  networks: Networks, key: jax.Array, image_shape: tuple[int, int, int]
) -> dict[str, PyTree]:
  """Parameters of the four networks for images of domain A's `image_shape`."""
  return init_variables(networks, key, image_shape)[0]


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
  params, critic_stats = init_variables(networks, params_key, image_shape)
  # Pool 'A' holds fakes of domain A (G_B's output), pool 'B' those of domain B.
  pools = {
    d: image_pool.init_pool(pool_size, shape)
    for d, shape in domain_shapes(image_shape, networks).items()
  }
  pools = step_parts.per_device_copies(pools, num_devices)
  bank_size = networks.loss.swd_bank if networks.loss.lambda_swd > 0 else 0
  banks = step_parts.per_device_copies(
    {
      f'{kind}_{d}': image_pool.init_pool(bank_size, shape)
      for d, shape in domain_shapes(image_shape, networks).items()
      for kind in ('real', 'fake')
    }
    if bank_size
    else {},
    num_devices,
  )
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state_g=networks.tx_g.init({k: params[k] for k in GENERATORS}),
    opt_state_d=networks.tx_d.init({k: params[k] for k in DISCRIMINATORS}),
    critic_stats=critic_stats,
    pools=pools,
    rng=rng,
    ema=step_parts.initial_ema(params, GENERATORS) if networks.ema_decay > 0 else {},
    banks=banks,
  )


# --------------------------------------------------------------------------------------
# The per-device step
# --------------------------------------------------------------------------------------


def generator_losses(
  g_params: dict[str, PyTree],
  d_params: dict[str, PyTree],
  real_a: jax.Array,
  real_b: jax.Array,
  *,
  networks: Networks,
  augment_key: jax.Array | None = None,
  critic_stats: dict[str, PyTree] | None = None,
  swd_key: jax.Array | None = None,
  swd_banks: dict[str, image_pool.ImagePool] | None = None,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], dict[str, jax.Array]]]:
  """The generators' objective with the discriminators fixed (reference `backward_G`).

  With `networks.augment`, the critics see the fakes augmented (keys from
  `augment_key`), and the generators are trained through the augmentation. With
  `loss.lambda_swd > 0`, each fake's colour distribution is also pulled towards the real
  images of its domain (projections drawn from `swd_key`); with `swd_banks` (recent
  images, {'real_A', 'fake_A', 'real_B', 'fake_B'}), along the map from all recent
  fakes to all recent reals.
  """
  cfg = networks.loss
  gen = lambda name, x: networks.generator_for(name).apply({'params': g_params[name]}, x)
  dis = _critic(networks, d_params, critic_stats)
  view = _augmenter(networks.augment, augment_key)

  fake_b = gen('G_A', real_a)
  rec_a = gen('G_B', fake_b)
  fake_a = gen('G_B', real_b)
  rec_b = gen('G_A', fake_a)
  terms = {
    'loss_G_A': losses.gan_loss(dis('D_A', view(fake_b)), True, cfg.gan_mode),
    'loss_G_B': losses.gan_loss(dis('D_B', view(fake_a)), True, cfg.gan_mode),
    'loss_cycle_A': losses.l1_loss(rec_a, real_a) * cfg.lambda_A,
    'loss_cycle_B': losses.l1_loss(rec_b, real_b) * cfg.lambda_B,
  }
  total = (
    cfg.lambda_gan * (terms['loss_G_A'] + terms['loss_G_B'])
    + terms['loss_cycle_A']
    + terms['loss_cycle_B']
  )
  if cfg.lambda_identity > 0:
    # G_A should leave B images alone, G_B should leave A images alone.
    idt = (
      functools.partial(_without_curve_gradient, g_params, networks)
      if cfg.get('identity_skips_curve')
      else gen
    )
    terms['loss_idt_A'] = (
      losses.l1_loss(idt('G_A', real_b), real_b) * cfg.lambda_B * cfg.lambda_identity
    )
    terms['loss_idt_B'] = (
      losses.l1_loss(idt('G_B', real_a), real_a) * cfg.lambda_A * cfg.lambda_identity
    )
    total = total + terms['loss_idt_A'] + terms['loss_idt_B']
  if cfg.lambda_swd > 0:
    if swd_key is None:
      raise ValueError('loss.lambda_swd is on, but the losses were given no swd_key.')
    key_a, key_b = jax.random.split(swd_key)
    swd = functools.partial(
      losses.colour_distribution_loss,
      num_projections=cfg.swd_projections,
      max_samples=cfg.swd_samples,
    )
    terms['loss_swd_A'] = cfg.lambda_swd * swd(
      fake_b, real_b, key_a, **_histories(swd_banks, 'B', fake_b, real_b)
    )
    terms['loss_swd_B'] = cfg.lambda_swd * swd(
      fake_a, real_a, key_b, **_histories(swd_banks, 'A', fake_a, real_a)
    )
    total = total + terms['loss_swd_A'] + terms['loss_swd_B']
  terms['loss_G'] = total
  return total, (terms, {'fake_A': fake_a, 'fake_B': fake_b})


def _without_curve_gradient(
  g_params: dict[str, PyTree], networks: Networks, name: str, x: jax.Array
) -> jax.Array:
  """Generator `name` on `x` with no gradient into its colour map (`curve`): the same
  output, but a loss on it trains only the convolutions."""
  params = dict(g_params[name])
  params['curve'] = jax.lax.stop_gradient(params['curve'])
  return networks.generator_for(name).apply({'params': params}, x)


def _histories(
  banks: dict[str, image_pool.ImagePool] | None,
  domain: str,
  fake: jax.Array,
  real: jax.Array,
) -> dict[str, jax.Array]:
  """The colour pull's `fake_history` and `real_history` for `domain` ({} without banks).

  Empty slots show the current images, so the two histories fill alike.
  """
  if not banks:
    return {}
  return {
    'fake_history': jax.lax.stop_gradient(
      image_pool.filled(banks[f'fake_{domain}'], fake)
    ),
    'real_history': image_pool.filled(banks[f'real_{domain}'], real),
  }


def discriminator_losses(
  d_params: dict[str, PyTree],
  real_a: jax.Array,
  real_b: jax.Array,
  fake_a: jax.Array,
  fake_b: jax.Array,
  *,
  networks: Networks,
  augment_key: jax.Array | None = None,
  critic_stats: dict[str, PyTree] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Both critics' objectives on real images and pooled fakes (reference `backward_D_*`).

  With `networks.augment`, every image is augmented before its critic sees it (keys
  from `augment_key`); R1 is then the gradient at the augmented real image.
  """
  gan_mode = networks.loss.gan_mode
  r1_gamma = networks.loss.r1_gamma
  dis = _critic(networks, d_params, critic_stats)
  view = _augmenter(networks.augment, augment_key)
  real_b, real_a = view(real_b), view(real_a)
  if r1_gamma > 0:
    real_ya, r1_a = losses.r1_penalty(functools.partial(dis, 'D_A'), real_b)
    real_yb, r1_b = losses.r1_penalty(functools.partial(dis, 'D_B'), real_a)
  else:
    real_ya, real_yb = dis('D_A', real_b), dis('D_B', real_a)
  fake_ya, fake_yb = dis('D_A', view(fake_b)), dis('D_B', view(fake_a))
  terms = {
    'loss_D_A': losses.discriminator_loss(real_ya, fake_ya, gan_mode),
    'loss_D_B': losses.discriminator_loss(real_yb, fake_yb, gan_mode),
    'D_A_real': losses.discriminator_score(real_ya, gan_mode),
    'D_A_fake': losses.discriminator_score(fake_ya, gan_mode),
    'D_B_real': losses.discriminator_score(real_yb, gan_mode),
    'D_B_fake': losses.discriminator_score(fake_yb, gan_mode),
  }
  total = terms['loss_D_A'] + terms['loss_D_B']
  if r1_gamma > 0:
    # Kept apart from loss_D_A/B, which stay comparable with runs without it.
    terms['loss_R1_A'] = 0.5 * r1_gamma * r1_a
    terms['loss_R1_B'] = 0.5 * r1_gamma * r1_b
    total = total + terms['loss_R1_A'] + terms['loss_R1_B']
  return total, terms


def _critic(
  networks: Networks, d_params: dict[str, PyTree], critic_stats: dict[str, PyTree] | None
) -> Callable[[str, jax.Array], jax.Array]:
  """`dis(name, images)`: a critic's logits, with its 'batch_stats' where it has some."""

  def dis(name: str, x: jax.Array) -> jax.Array:
    variables = {'params': d_params[name]}
    if critic_stats:
      variables['batch_stats'] = critic_stats[name]
    return networks.discriminator.apply(variables, x)

  return dis


def _augmenter(
  policy: tuple[str, ...], key: jax.Array | None
) -> Callable[[jax.Array], jax.Array]:
  """`view(images)`: the images as a critic sees them, a fresh draw at every call
  (`key` folded with a call counter); the identity when `policy` is empty."""
  if not policy:
    return lambda x: x
  if key is None:
    raise ValueError('augment.policy is on, but the losses were given no augment_key.')
  calls = itertools.count()
  return lambda x: diffaugment.augment(x, jax.random.fold_in(key, next(calls)), policy)


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  networks: Networks,
  axis_name: str | None = step_parts.AXIS,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One CycleGAN iteration on this device's shard of the batch.

  Generators first, with the discriminators fixed; then both discriminators, on fakes
  made before the generator update and drawn through the image pools. Gradients and
  metrics are averaged over `axis_name` (None: a plain single-device step).
  """
  mean, local = step_parts.replica_ops(axis_name)
  real_a, real_b = batch['A'], batch['B']
  g_params = local({k: state.params[k] for k in GENERATORS})
  d_params = local({k: state.params[k] for k in DISCRIMINATORS})

  key_g, key_d = _augment_keys(state, axis_name) if networks.augment else (None, None)
  key_swd = (
    _stream_key(state, axis_name, _SWD_STREAM) if networks.loss.lambda_swd > 0 else None
  )
  banks = {k: step_parts.local_pool(v) for k, v in state.banks.items()}
  g_grads, (g_terms, fakes) = jax.grad(
    lambda p: generator_losses(
      p,
      d_params,
      real_a,
      real_b,
      networks=networks,
      augment_key=key_g,
      critic_stats=state.critic_stats,
      swd_key=key_swd,
      swd_banks=banks,
    ),
    has_aux=True,
  )(g_params)
  new_g_params, opt_state_g = step_parts.apply_updates(
    networks.tx_g,
    {k: state.params[k] for k in GENERATORS},
    state.opt_state_g,
    mean(g_grads),
  )

  seen = {'real_A': real_a, 'real_B': real_b, **fakes}
  banks = {
    k: step_parts.global_pool(image_pool.push(bank, jax.lax.stop_gradient(seen[k])))
    for k, bank in banks.items()
  }

  key = jax.random.wrap_key_data(state.rng[0])
  key, key_a, key_b = jax.random.split(key, 3)
  pool_a, fake_a = image_pool.query(
    step_parts.local_pool(state.pools['A']), jax.lax.stop_gradient(fakes['fake_A']), key_a
  )
  pool_b, fake_b = image_pool.query(
    step_parts.local_pool(state.pools['B']), jax.lax.stop_gradient(fakes['fake_B']), key_b
  )

  d_grads, d_terms = jax.grad(
    lambda p: discriminator_losses(
      p,
      real_a,
      real_b,
      fake_a,
      fake_b,
      networks=networks,
      augment_key=key_d,
      critic_stats=state.critic_stats,
    ),
    has_aux=True,
  )(d_params)
  new_d_params, opt_state_d = step_parts.apply_updates(
    networks.tx_d,
    {k: state.params[k] for k in DISCRIMINATORS},
    state.opt_state_d,
    mean(d_grads),
  )

  # One power iteration per step, from the parameters the step's losses used; the mean
  # keeps the replicas' vectors identical (and typed as replicated under shard_map).
  critic_stats = {
    k: mean(models.spectral_stats_update(d_params[k], v))
    for k, v in state.critic_stats.items()
  }
  metrics = mean({**g_terms, **d_terms})
  metrics['learning_rate'] = networks.schedule(state.step)
  if networks.lr_D_scale != 1.0:
    metrics['learning_rate_D'] = networks.schedule(state.step) * networks.lr_D_scale
  ema = step_parts.update_ema(
    state.ema,
    new_g_params,
    state.step + 1,
    decay=networks.ema_decay,
    start_step=networks.ema_start_step,
  )
  new_state = state.replace(
    ema=ema,
    step=state.step + 1,
    params={**new_g_params, **new_d_params},
    opt_state_g=opt_state_g,
    opt_state_d=opt_state_d,
    critic_stats=critic_stats,
    pools={'A': step_parts.global_pool(pool_a), 'B': step_parts.global_pool(pool_b)},
    banks=banks,
    rng=jax.random.key_data(key)[None],
  )
  return new_state, metrics


# Folded into the per-device key for DiffAugment and for the sliced Wasserstein
# projections, apart from the pools' stream and from each other.
_AUGMENT_STREAM = 0x6175676D
_SWD_STREAM = 0x73776400


def _stream_key(state: TrainState, axis_name: str | None, stream: int) -> jax.Array:
  """This step's and device's key of one random stream (`step_parts.stream_key`)."""
  return step_parts.stream_key(state.step, state.rng, axis_name, stream)


def _augment_keys(
  state: TrainState, axis_name: str | None
) -> tuple[jax.Array, jax.Array]:
  """DiffAugment's keys for the generators' and the critics' losses of this step."""
  key_g, key_d = jax.random.split(_stream_key(state, axis_name, _AUGMENT_STREAM))
  return key_g, key_d


def _missing_hint(name: str, direction: str) -> str:
  flag = '--g_AtoB' if name == 'G_A' else '--g_BtoA'
  return (
    f'converted model-zoo weights hold one direction: translate the other way, or '
    f'convert the {direction} weights too ({flag}=latest_net_G_B.pth)'
  )


METHOD = base.Method(
  name=NAME,
  create_networks=create_networks,
  init_state=init_state,
  train_step=train_step,
  per_device_fields=('pools', 'rng', 'banks'),
  generators=GENERATORS,
  directions=DIRECTIONS,
  generator_modules=generators_from_config,
  console_terms=CONSOLE_TERMS,
  missing_hint=_missing_hint,
)
