"""The CycleGAN training step: networks, state, schedule, losses, the sharded step.

The step is written per device, as under `pmap`: it sees its shard of the batch and
averages gradients and metrics with `lax.pmean` over the `data` axis. It is compiled with
`jax.jit` over `jax.shard_map` on a one-axis mesh of every device of every host (what
`jax.pmap` itself is in JAX >= 0.8). Parameters and optimiser states are replicated; the
batch, the image pools and the per-device keys are sharded on `data`.

Nothing here reads data from disk or writes logs (that is `train.py`, the loop), so the
step runs, and is benchmarked, without TensorFlow.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import math
from typing import Any, Callable, Iterable, Iterator

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import ml_collections
import numpy as np
import optax

from cyclegan_jax.methods import diffaugment
from cyclegan_jax.methods import image_pool
from cyclegan_jax.methods import losses
from cyclegan_jax.nets import models

PyTree = Any
AXIS = 'data'
GENERATORS = ('G_A', 'G_B')
DISCRIMINATORS = ('D_A', 'D_B')


# --------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------


def steps_per_epoch(epoch_length: int, batch_size: int) -> int:
  """Steps in one epoch of max(|A|, |B|) pairs (the reference keeps the last short batch)."""
  return max(1, math.ceil(epoch_length / batch_size))


def total_steps(config: ml_collections.ConfigDict, epoch_length: int) -> int:
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return steps_per_epoch(epoch_length, config.batch_size) * (
    config.num_epochs + config.num_epochs_decay
  )


def create_learning_rate_schedule(
  config: ml_collections.ConfigDict, epoch_length: int
) -> optax.Schedule:
  """The reference's `linear` policy: constant for `num_epochs`, then linear decay.

  During (0-based) epoch e the rate is lr · (1 − max(0, e + 1 − num_epochs) /
  (num_epochs_decay + 1)), so the last epoch runs at lr / (num_epochs_decay + 1). With
  `num_train_steps > 0` an "epoch" is num_train_steps / (num_epochs + num_epochs_decay)
  steps, which keeps the same shape. `lr_schedule_granularity = 'step'` interpolates e
  continuously instead of stepping once per epoch.
  """
  n_const, n_decay = config.num_epochs, config.num_epochs_decay
  if config.num_train_steps > 0:
    epoch_steps = config.num_train_steps / max(1, n_const + n_decay)
  else:
    epoch_steps = float(steps_per_epoch(epoch_length, config.batch_size))
  granularity = config.lr_schedule_granularity
  if granularity not in ('epoch', 'step'):
    raise ValueError(
      f"lr_schedule_granularity must be 'epoch' or 'step', got {granularity!r}."
    )
  base_lr = config.optim.lr * batch_lr_factor(
    config.optim.lr_batch_scaling, config.batch_size
  )

  def schedule(count: jax.Array) -> jax.Array:
    epoch = jnp.asarray(count, jnp.float32) / epoch_steps
    if granularity == 'epoch':
      epoch = jnp.floor(epoch)
    factor = 1.0 - jnp.maximum(0.0, epoch + 1.0 - n_const) / (n_decay + 1.0)
    return base_lr * jnp.clip(factor, 0.0, 1.0)

  return schedule


def batch_lr_factor(scaling: str, batch_size: int) -> float:
  """The learning rates' factor for a global batch (reference batch 1): 'none' keeps
  them, 'linear' multiplies by the batch, 'sqrt' by its square root."""
  if scaling == 'none':
    return 1.0
  if scaling == 'linear':
    return float(batch_size)
  if scaling == 'sqrt':
    return math.sqrt(batch_size)
  raise ValueError(
    f"optim.lr_batch_scaling must be 'none', 'linear' or 'sqrt', got {scaling!r}."
  )


def scaled_schedule(schedule: optax.Schedule, scale: float) -> optax.Schedule:
  """`schedule` times `scale` (the critics' rate under TTUR); `schedule` itself at 1."""
  if scale == 1.0:
    return schedule
  return lambda count: schedule(count) * scale


# --------------------------------------------------------------------------------------
# State
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


def create_networks(config: ml_collections.ConfigDict, epoch_length: int) -> Networks:
  schedule = create_learning_rate_schedule(config, epoch_length)
  if config.loss.gan_mode not in losses.GAN_MODES:
    raise ValueError(
      f'loss.gan_mode must be one of {losses.GAN_MODES}, got {config.loss.gan_mode!r}.'
    )

  def adam(rate: optax.Schedule):
    return optax.adam(rate, b1=config.optim.beta1, b2=config.optim.beta2)

  discriminator = models.discriminator_from_config(config.model)
  check_discriminator_fits(discriminator, config.crop_size)

  generators = models.generators_from_config(config.model)
  return Networks(
    generator=generators['G_A'],
    discriminator=discriminator,
    tx_g=adam(schedule),
    tx_d=adam(scaled_schedule(schedule, config.optim.lr_D_scale)),
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


def _state_specs(state: TrainState) -> TrainState:
  """PartitionSpecs: replicated except the per-device pools and keys."""
  replicated = jax.tree.map(lambda _: P(), state)
  return replicated.replace(
    pools=jax.tree.map(lambda _: P(AXIS), state.pools),
    banks=jax.tree.map(lambda _: P(AXIS), state.banks),
    rng=P(AXIS),
  )


def state_shardings(state: TrainState, mesh: jax.sharding.Mesh) -> TrainState:
  return jax.tree.map(
    lambda spec: NamedSharding(mesh, spec),
    _state_specs(state),
    is_leaf=lambda x: isinstance(x, P),
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


def create_train_state(
  networks: Networks,
  *,
  seed: int,
  mesh: jax.sharding.Mesh,
  image_shape: tuple[int, int, int],
  pool_size: int,
) -> TrainState:
  """Initialises the state directly with its shardings (no host copies)."""
  num_devices = mesh.devices.size

  def init() -> TrainState:
    rng_key = jax.random.key(seed)
    # 'rbg' keys compile ~10x faster than threefry for the many N(0, 0.02) draws.
    params, critic_stats = init_variables(
      networks, jax.random.key(seed, impl='rbg'), image_shape
    )
    # Pool 'A' holds fakes of domain A (G_B's output), pool 'B' those of domain B.
    pools = {
      d: image_pool.init_pool(pool_size, shape)
      for d, shape in domain_shapes(image_shape, networks).items()
    }
    pools = _per_device_copies(pools, num_devices)
    bank_size = networks.loss.swd_bank if networks.loss.lambda_swd > 0 else 0
    banks = _per_device_copies(
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
      rng=jax.random.key_data(jax.random.split(rng_key, num_devices)),
      ema=initial_ema(params) if networks.ema_decay > 0 else {},
      banks=banks,
    )

  abstract = jax.eval_shape(init)
  return jax.jit(init, out_shardings=state_shardings(abstract, mesh))()


def _per_device_copies(pools: PyTree, num_devices: int) -> PyTree:
  """One copy of each pool per device, as global arrays to shard on `data`.

  Stacked on a leading device axis, flattened for the images: each device's shard of
  `images` is then its own [size, H, W, C] buffer (and of `count` its own counter).
  """
  pools = jax.tree.map(lambda x: jnp.stack([x] * num_devices), pools)
  return jax.tree.map(
    lambda x: x.reshape((num_devices * x.shape[1],) + x.shape[2:]) if x.ndim > 1 else x,
    pools,
  )


def initial_ema(params: dict[str, PyTree]) -> dict[str, PyTree]:
  """The generators' average before any step: a copy of their parameters."""
  return {k: jax.tree.map(jnp.copy, params[k]) for k in GENERATORS}


def update_ema(
  ema: dict[str, PyTree],
  params: dict[str, PyTree],
  step: jax.Array,
  *,
  decay: float,
  start_step: int = 0,
) -> dict[str, PyTree]:
  """ema ← decay·ema + (1 − decay)·params after update number `step` (1-based).

  Up to `start_step` the average copies the parameters: the early, fast-changing
  weights would otherwise linger in it for ~1/(1 − decay) steps.
  """
  d = jnp.where(step <= start_step, 0.0, decay).astype(jnp.float32)
  return jax.tree.map(
    lambda e, p: (d * e + (1.0 - d) * p).astype(e.dtype), ema, {k: params[k] for k in ema}
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
  `loss.lambda_swd > 0`, each fake's patch distribution is also pulled towards the real
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
    terms['loss_idt_A'] = (
      losses.l1_loss(gen('G_A', real_b), real_b) * cfg.lambda_B * cfg.lambda_identity
    )
    terms['loss_idt_B'] = (
      losses.l1_loss(gen('G_B', real_a), real_a) * cfg.lambda_A * cfg.lambda_identity
    )
    total = total + terms['loss_idt_A'] + terms['loss_idt_B']
  if cfg.lambda_swd > 0:
    if swd_key is None:
      raise ValueError('loss.lambda_swd is on, but the losses were given no swd_key.')
    key_a, key_b = jax.random.split(swd_key)
    swd = functools.partial(
      losses.patch_distribution_loss,
      patch_size=cfg.swd_patch_size,
      levels=cfg.swd_levels,
      num_projections=cfg.swd_projections,
      power=cfg.swd_power,
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


def _histories(
  banks: dict[str, image_pool.ImagePool] | None,
  domain: str,
  fake: jax.Array,
  real: jax.Array,
) -> dict[str, jax.Array]:
  """The patch loss's `fake_history` and `real_history` for `domain` ({} without banks).

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


def _apply_updates(
  tx: optax.GradientTransformation,
  params: dict[str, PyTree],
  opt_state: optax.OptState,
  grads: dict[str, PyTree],
) -> tuple[dict[str, PyTree], optax.OptState]:
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  networks: Networks,
  axis_name: str | None = AXIS,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One CycleGAN iteration on this device's shard of the batch.

  Generators first, with the discriminators fixed; then both discriminators, on fakes
  made before the generator update and drawn through the image pools. Gradients and
  metrics are averaged over `axis_name` (None: a plain single-device step).
  """
  if axis_name:
    mean = lambda x: jax.lax.pmean(x, axis_name)
    # Differentiate this device's loss w.r.t. a per-device copy of the replicated
    # parameters: without the cast, autodiff under shard_map would psum the gradients
    # itself (the transpose of the implicit invariant->varying cast), giving the sum
    # over devices rather than pmap's per-device gradients that `mean` then averages.
    local = lambda tree: jax.tree.map(
      lambda x: jax.lax.pcast(x, axis_name, to='varying'), tree
    )
  else:
    mean = local = lambda x: x
  real_a, real_b = batch['A'], batch['B']
  g_params = local({k: state.params[k] for k in GENERATORS})
  d_params = local({k: state.params[k] for k in DISCRIMINATORS})

  key_g, key_d = _augment_keys(state, axis_name) if networks.augment else (None, None)
  key_swd = (
    _stream_key(state, axis_name, _SWD_STREAM) if networks.loss.lambda_swd > 0 else None
  )
  banks = {k: _local_pool(v) for k, v in state.banks.items()}
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
  new_g_params, opt_state_g = _apply_updates(
    networks.tx_g,
    {k: state.params[k] for k in GENERATORS},
    state.opt_state_g,
    mean(g_grads),
  )

  seen = {'real_A': real_a, 'real_B': real_b, **fakes}
  banks = {
    k: _global_pool(image_pool.push(bank, jax.lax.stop_gradient(seen[k])))
    for k, bank in banks.items()
  }

  key = jax.random.wrap_key_data(state.rng[0])
  key, key_a, key_b = jax.random.split(key, 3)
  pool_a, fake_a = image_pool.query(
    _local_pool(state.pools['A']), jax.lax.stop_gradient(fakes['fake_A']), key_a
  )
  pool_b, fake_b = image_pool.query(
    _local_pool(state.pools['B']), jax.lax.stop_gradient(fakes['fake_B']), key_b
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
  new_d_params, opt_state_d = _apply_updates(
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
  ema = state.ema
  if ema:
    ema = update_ema(
      ema,
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
    pools={'A': _global_pool(pool_a), 'B': _global_pool(pool_b)},
    banks=banks,
    rng=jax.random.key_data(key)[None],
  )
  return new_state, metrics


# Folded into the per-device key for DiffAugment and for the sliced Wasserstein
# projections, apart from the pools' stream and from each other.
_AUGMENT_STREAM = 0x6175676D
_SWD_STREAM = 0x73776400


def _stream_key(state: TrainState, axis_name: str | None, stream: int) -> jax.Array:
  """This step's and device's key of one random stream.

  Step and device index are folded in explicitly: keys restarted from the seed (a resume
  on another device count) still give every step and device its own draws.
  """
  key = jax.random.fold_in(jax.random.wrap_key_data(state.rng[0]), stream)
  key = jax.random.fold_in(key, state.step)
  return jax.random.fold_in(key, jax.lax.axis_index(axis_name) if axis_name else 0)


def _augment_keys(
  state: TrainState, axis_name: str | None
) -> tuple[jax.Array, jax.Array]:
  """DiffAugment's keys for the generators' and the critics' losses of this step."""
  key_g, key_d = jax.random.split(_stream_key(state, axis_name, _AUGMENT_STREAM))
  return key_g, key_d


def _local_pool(pool: image_pool.ImagePool) -> image_pool.ImagePool:
  """This device's shard of a pool: its `count` arrives as a length-1 vector."""
  return pool.replace(count=pool.count[0])


def _global_pool(pool: image_pool.ImagePool) -> image_pool.ImagePool:
  return pool.replace(count=pool.count[None])


def make_parallel_train_step(
  networks: Networks,
  mesh: jax.sharding.Mesh,
  state: TrainState,
) -> Callable[
  [TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]
]:
  """`train_step` under `jax.shard_map` over `data`, jitted, the state donated."""
  specs = _state_specs(state)
  step = jax.shard_map(
    functools.partial(train_step, networks=networks, axis_name=AXIS),
    mesh=mesh,
    in_specs=(specs, P(AXIS)),
    out_specs=(specs, P()),
  )
  return jax.jit(step, donate_argnums=(0,))


# --------------------------------------------------------------------------------------
# Host to device
# --------------------------------------------------------------------------------------


def device_batches(
  batches: Iterable[dict[str, np.ndarray]], mesh: jax.sharding.Mesh, prefetch: int = 2
) -> Iterator[dict[str, jax.Array]]:
  """Per-host numpy batches → global arrays sharded on `data`, `prefetch` in flight."""
  sharding = NamedSharding(mesh, P(AXIS))
  queue = collections.deque()

  def put(batch):
    return {
      k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
      for k, v in batch.items()
    }

  iterator = iter(batches)
  for batch in iterator:
    queue.append(put(batch))
    if len(queue) > prefetch:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def check_batch_size(batch_size: int, num_devices: int, num_processes: int) -> None:
  if batch_size % num_devices:
    raise ValueError(
      f'batch_size={batch_size} does not divide by the {num_devices} devices '
      f'({num_processes} process(es)): it is the GLOBAL batch. Use a multiple of '
      f'{num_devices}, e.g. --config.batch_size={num_devices * max(1, batch_size // num_devices)}.'
    )
