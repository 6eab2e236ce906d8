"""CUT and FastCUT (Park et al. 2020): one-way unpaired translation by patch contrast.

As the official `CUTModel` (taesungp/contrastive-unpaired-translation): one generator G
maps domain A (the source side of `config.direction`) to B, one PatchGAN D judges B.
Besides the GAN loss, G is trained by PatchNCE: the encoder features of G(a) at the
official layers are pulled towards those of a at the same positions and pushed from
those at other positions (`patchnce`), through one MLP head per layer (the network F,
with its own Adam). CUT adds the same loss between G(b) and b (`nce_idt`, averaged with
the first); FastCUT weighs the loss 10× without it, and flips the input at random,
flipping G's features back before the loss (flip-equivariance).

The step is `optimize_parameters`: fake = G(real) once (real = [a, b] with `nce_idt`,
flipped as a whole on a coin flip under flip-equivariance); D is updated on the detached
G(a) and on b, loss_D = ½ (fake + real); then G and F together with D's new weights:
loss_G = λ_GAN · GAN(D(G(a)), real) + NCE. No image pool. The coin and the patch
positions are drawn from a replicated key, so every device (and every device count)
uses the same ones, as the official single-process batch does.
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
from cyclegan_jax.methods import patchnce
from cyclegan_jax.methods import step_parts
from cyclegan_jax.nets import models
from cyclegan_jax.nets import spec

PyTree = Any
NAME = 'cut'
GENERATORS = ('G',)
# The official `loss_names`, with NCE_Y (logged as 0 without nce_idt).
CONSOLE_TERMS = ('G_GAN', 'D_real', 'D_fake', 'NCE', 'NCE_Y')
# Folded into the replicated key for each step's coin flip and patch positions.
_PATCH_STREAM = 0x6E6365
NET_F = ('mlp_sample', 'sample')


# --------------------------------------------------------------------------------------
# Networks and state
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
  """The official CUT options the step reads (`config.cut`, `config.loss`)."""

  nce_layers: tuple[int, ...] = (0, 4, 8, 12, 16)
  num_patches: int = 256
  nce_T: float = 0.07  # noqa: N815
  lambda_NCE: float = 1.0  # noqa: N815
  lambda_GAN: float = 1.0  # noqa: N815
  nce_idt: bool = True
  flip_equivariance: bool = False
  all_negatives: bool = False
  use_mlp: bool = True
  gan_mode: str = 'lsgan'


@dataclasses.dataclass(frozen=True)
class Networks:
  """The static half of training: modules, optimisers, settings."""

  generator: nn.Module
  discriminator: nn.Module
  heads: patchnce.PatchHeads
  tx_g: optax.GradientTransformation
  tx_d: optax.GradientTransformation
  tx_f: optax.GradientTransformation
  schedule: optax.Schedule
  settings: Settings
  direction: str = 'AtoB'
  source_channels: int = 3
  init_type: str = 'xavier'
  init_gain: float = 0.02
  ema_decay: float = 0.0
  ema_start_step: int = 0
  method: str = NAME


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a pytree of global arrays."""

  step: jax.Array  # int32 scalar, replicated.
  params: dict[str, PyTree]  # {'G', 'D', 'F'}, replicated (F: {} for netF='sample').
  opt_state_G: optax.OptState  # noqa: N815
  opt_state_D: optax.OptState  # noqa: N815
  opt_state_F: optax.OptState  # noqa: N815  # The official optimizer_F.
  rng: jax.Array  # [devices, 2] uint32 key data; per device, sharded.
  # [2] uint32 key data, replicated: the coin flips and patch positions of every step,
  # the same for any device count.
  shared_rng: jax.Array
  ema: dict[str, PyTree] = dataclasses.field(default_factory=dict)  # {'G'} or {}.


def nce_layers_of(text: str) -> tuple[int, ...]:
  """'0,4,8,12,16' → (0, 4, 8, 12, 16) (one line if not increasing integers)."""
  try:
    layers = tuple(int(t) for t in str(text).split(','))
  except ValueError:
    layers = ()
  if not layers or list(layers) != sorted(set(layers)) or layers[0] < 0:
    raise ValueError(
      f"cut.nce_layers={text!r} must be increasing layer indices such as '0,4,8,12,16'."
    )
  return layers


def feature_channels(generator: nn.Module, layers: tuple[int, ...], channels: int):
  """The channels of `generator`'s features at `layers` (from shapes, no compute)."""
  x = jax.ShapeDtypeStruct((1, 16, 16, channels), jnp.float32)

  def run(x):
    variables = generator.init(jax.random.key(0), x)
    return generator.apply(variables, x, layers)

  return tuple(int(f.shape[-1]) for f in jax.eval_shape(run, x))


def settings_of(config: ml_collections.ConfigDict) -> Settings:
  cut = config.cut
  return Settings(
    nce_layers=nce_layers_of(cut.nce_layers),
    num_patches=int(cut.num_patches),
    nce_T=float(cut.nce_T),
    lambda_NCE=float(cut.lambda_NCE),
    lambda_GAN=float(config.loss.lambda_gan),
    nce_idt=bool(cut.nce_idt),
    flip_equivariance=bool(cut.flip_equivariance),
    all_negatives=bool(cut.nce_includes_all_negatives_from_minibatch),
    use_mlp=cut.netF == 'mlp_sample',
    gan_mode=config.loss.gan_mode,
  )


def create_networks(
  config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> Networks:
  """CUT's networks, optimisers (G, D and F: Adam at the same rate) and settings."""
  losses.check_gan_mode(config.loss.gan_mode)
  check_options(config)
  settings = settings_of(config)
  adam = lambda rate: optax.adam(rate, b1=config.optim.beta1, b2=config.optim.beta2)
  direction = one_way.config_direction(config)
  source = one_way.sides(direction)[0]
  source_channels = channels_lib.domain_channels(config.model)[source]
  generator = one_way.generators_from_config(config.model, direction=direction)['G']
  discriminator = models.discriminator_from_config(config.model)
  if hasattr(discriminator, 'num_layers'):
    cycle_gan.check_discriminator_fits(discriminator, config.crop_size)
  channels = feature_channels(generator, settings.nce_layers, source_channels)
  return Networks(
    generator=generator,
    discriminator=discriminator,
    heads=patchnce.PatchHeads(channels, int(config.cut.netF_nc)),
    tx_g=adam(schedule),
    tx_d=adam(step_parts.scaled_schedule(schedule, config.optim.lr_D_scale)),
    tx_f=adam(schedule),
    schedule=schedule,
    settings=settings,
    direction=direction,
    source_channels=source_channels,
    init_type=config.cut.init_type,
    init_gain=float(config.cut.init_gain),
    ema_decay=float(config.ema.decay) if 'ema' in config else 0.0,
    ema_start_step=int(config.ema.start_step) if 'ema' in config else 0,
  )


# CycleGAN's options the CUT step has no place for: (field, its off value, why).
_UNSUPPORTED = (
  ('model.spectral_norm_D', False, 'the official CUT critic has none'),
  ('model.norm_D', 'instance', "the step keeps no critic statistics ('none' works)"),
  ('loss.r1_gamma', 0.0, 'the official CUT has no R1 penalty'),
  ('loss.lambda_swd', 0.0, 'the patch-distribution loss is CycleGAN-only here'),
  ('augment.policy', '', 'DiffAugment is CycleGAN-only here'),
  ('pool_size', 0, 'CUT keeps no image pool (the official --pool_size 0)'),
  ('loss.identity_skips_curve', False, "CUT's identity term is nce_idt, not an L1"),
)


def check_options(config: ml_collections.ConfigDict) -> None:
  """Raises a one-line ValueError for an option the CUT step does not have."""
  if spec.is_unet(config.model.netG):
    raise ValueError(
      f'model.netG={config.model.netG!r}: CUT reads the features of a ResNet '
      "generator's encoder; use resnet_9blocks or resnet_6blocks."
    )
  if config.model.get('norm', 'instance') != 'instance':
    raise ValueError("model.norm must be 'instance' for method=cut (a ResNet generator).")
  for field, off, why in _UNSUPPORTED:
    group, _, name = field.rpartition('.')
    holder = config[group] if group else config
    value = holder.get(name, off)
    if field == 'model.norm_D' and value == 'none':
      continue
    if value != off:
      raise ValueError(
        f'{field}={value!r} does not apply to method=cut ({why}): drop the override '
        f'or pass --config.{field}={off!r}.'
      )


def init_params(
  networks: Networks, key: jax.Array, image_shape: tuple[int, int, int]
) -> dict[str, PyTree]:
  """{'G', 'D', 'F'} for images of `image_shape`'s size, drawn as `init_type` says."""
  h, w = image_shape[:2]
  key_g, key_d, key_f, key_init = jax.random.split(key, 4)
  x = jnp.zeros((1, h, w, networks.source_channels), jnp.float32)
  y = jnp.zeros((1, h, w, networks.generator.output_channels), jnp.float32)
  params = {
    'G': networks.generator.init(key_g, x)['params'],
    'D': networks.discriminator.init(key_d, y)['params'],
    'F': networks.heads.init_params(key_f) if networks.settings.use_mlp else {},
  }
  keys = dict(zip(params, jax.random.split(key_init, 3)))
  return {
    k: patchnce.init_kernels(v, keys[k], networks.init_type, networks.init_gain)
    for k, v in params.items()
  }


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
  del pool_size, num_devices
  params = init_params(networks, params_key, image_shape)
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state_G=networks.tx_g.init(params['G']),
    opt_state_D=networks.tx_d.init(params['D']),
    opt_state_F=networks.tx_f.init(params['F']),
    rng=rng,
    # From the parameters' key, not the per-device keys: those depend on the device
    # count, and the positions must not.
    shared_rng=jax.random.bits(
      jax.random.fold_in(params_key, _PATCH_STREAM), (2,), jnp.uint32
    ),
    ema=step_parts.initial_ema(params, GENERATORS) if networks.ema_decay > 0 else {},
  )


# --------------------------------------------------------------------------------------
# The per-device step
# --------------------------------------------------------------------------------------


def encode(networks: Networks, g_params: PyTree, x: jax.Array) -> list[jax.Array]:
  """G's features of `x` at the NCE layers (the official `encode_only`)."""
  return networks.generator.apply({'params': g_params}, x, networks.settings.nce_layers)


def project(networks: Networks, f_params: PyTree, samples: list) -> list[jax.Array]:
  """F: the MLP heads (or none for 'sample'), then the L2 normalisation."""
  if networks.settings.use_mlp:
    samples = networks.heads.apply({'params': f_params}, samples)
  return [patchnce.l2_normalize(s) for s in samples]


def nce_loss(
  networks: Networks,
  f_params: PyTree,
  feat_q: list[jax.Array],
  feat_k: list[jax.Array],
  key: jax.Array,
  axis_name: str | None,
) -> jax.Array:
  """The official `calculate_NCE_loss` on encoder features: the same positions for
  queries and keys, λ_NCE · the mean over patches, averaged over the layers."""
  s = networks.settings
  ids = patchnce.patch_ids(key, feat_k, s.num_patches)
  k = project(networks, f_params, [patchnce.sample(f, i) for f, i in zip(feat_k, ids)])
  q = project(networks, f_params, [patchnce.sample(f, i) for f, i in zip(feat_q, ids)])
  batch = feat_q[0].shape[0]
  total = 0.0
  for q_l, k_l in zip(q, jax.lax.stop_gradient(k)):
    rows = patchnce.patch_nce(
      q_l,
      k_l,
      batch=batch,
      temperature=s.nce_T,
      all_negatives=s.all_negatives,
      axis_name=axis_name,
    )
    total = total + jnp.mean(rows) * s.lambda_NCE
  return total / len(q)


def discriminator_loss(
  d_params: PyTree, real_b: jax.Array, fake_b: jax.Array, *, critic: nn.Module, mode: str
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The official `compute_D_loss`: ½ (GAN(D(fake), fake) + GAN(D(real), real))."""
  terms = {
    'D_fake': losses.gan_loss(critic.apply({'params': d_params}, fake_b), False, mode),
    'D_real': losses.gan_loss(critic.apply({'params': d_params}, real_b), True, mode),
  }
  return (terms['D_fake'] + terms['D_real']) * 0.5, terms


def generator_loss(
  g_params: PyTree,
  f_params: PyTree,
  fake: jax.Array,
  d_params: PyTree,
  real: jax.Array,
  flipped: jax.Array,
  keys: tuple[jax.Array, jax.Array],
  *,
  networks: Networks,
  axis_name: str | None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The official `compute_G_loss` as a function of G's and F's parameters and of G's
  output `fake` ([G(a), G(b)] with `nce_idt`); `real` is the unflipped [a, b] or a."""
  s = networks.settings
  n = real.shape[0] // (2 if s.nce_idt else 1)
  fake_b = fake[:n]
  terms = {}
  pred = networks.discriminator.apply({'params': d_params}, fake_b)
  terms['G_GAN'] = losses.gan_loss(pred, True, s.gan_mode) * s.lambda_GAN
  zero = jnp.zeros((), jnp.float32)
  terms['NCE'], terms['NCE_Y'] = zero, zero
  nce = zero
  if s.lambda_NCE > 0:
    feat_q = encode(networks, g_params, fake)
    if s.flip_equivariance:  # G saw the flipped input: flip its features back.
      feat_q = [jnp.where(flipped, f[:, :, ::-1], f) for f in feat_q]
    feat_k = jax.lax.stop_gradient(encode(networks, g_params, real))
    half = lambda feats, i: [f[i * n : (i + 1) * n] for f in feats]
    terms['NCE'] = nce_loss(
      networks, f_params, half(feat_q, 0), half(feat_k, 0), keys[0], axis_name
    )
    nce = terms['NCE']
    if s.nce_idt:
      terms['NCE_Y'] = nce_loss(
        networks, f_params, half(feat_q, 1), half(feat_k, 1), keys[1], axis_name
      )
      nce = (terms['NCE'] + terms['NCE_Y']) * 0.5
  terms['G'] = terms['G_GAN'] + nce
  return terms['G'], terms


def step_keys(state: TrainState) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(coin, NCE positions, NCE_Y positions) keys of this step, the same on every device."""
  key = jax.random.fold_in(jax.random.wrap_key_data(state.shared_rng), _PATCH_STREAM)
  return tuple(jax.random.split(jax.random.fold_in(key, state.step), 3))


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  networks: Networks,
  axis_name: str | None = step_parts.AXIS,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One CUT iteration on this device's shard of the batch (`optimize_parameters`).

  G runs forward once (its pullback turns dL/dfake into G's gradients, added to those
  of the NCE encoder passes); D is updated first, then G and F read D's new weights.
  Gradients and metrics are averaged over `axis_name` (None: one device).
  """
  s = networks.settings
  mean, local = step_parts.replica_ops(axis_name)
  source, target = one_way.sides(networks.direction)
  real_a, real_b = batch[source], batch[target]
  coin, key_nce, key_idt = step_keys(state)
  real = jnp.concatenate([real_a, real_b.astype(real_a.dtype)]) if s.nce_idt else real_a
  flipped = jax.random.bernoulli(coin) if s.flip_equivariance else jnp.array(False)
  g_input = jnp.where(flipped, real[:, :, ::-1], real)

  g_params = local(state.params['G'])
  forward = lambda p: networks.generator.apply({'params': p}, g_input)
  fake, pullback = jax.vjp(forward, g_params)
  fake_b = fake[: real_a.shape[0]]

  d_grads, d_terms = jax.grad(discriminator_loss, has_aux=True)(
    local(state.params['D']),
    real_b,
    jax.lax.stop_gradient(fake_b),
    critic=networks.discriminator,
    mode=s.gan_mode,
  )
  new_d, opt_state_d = step_parts.apply_updates(
    networks.tx_d, state.params['D'], state.opt_state_D, mean(d_grads)
  )

  loss_fn = functools.partial(generator_loss, networks=networks, axis_name=axis_name)
  (g_direct, f_grads, d_fake), g_terms = jax.grad(
    loss_fn, argnums=(0, 1, 2), has_aux=True
  )(g_params, local(state.params['F']), fake, new_d, real, flipped, (key_nce, key_idt))
  (g_through_fake,) = pullback(d_fake)
  g_grads = jax.tree.map(jnp.add, g_direct, g_through_fake)
  new_g, opt_state_g = step_parts.apply_updates(
    networks.tx_g, state.params['G'], state.opt_state_G, mean(g_grads)
  )
  new_f, opt_state_f = step_parts.apply_updates(
    networks.tx_f, state.params['F'], state.opt_state_F, mean(f_grads)
  )

  metrics = mean({**g_terms, **d_terms})
  metrics['learning_rate'] = networks.schedule(state.step)
  params = {'G': new_g, 'D': new_d, 'F': new_f}
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
    opt_state_G=opt_state_g,
    opt_state_D=opt_state_d,
    opt_state_F=opt_state_f,
    ema=ema,
  )
  return new_state, metrics


def _missing_hint(name: str, direction: str) -> str:
  del name
  return (
    f'a CUT model translates the one direction it was trained for: pass '
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
