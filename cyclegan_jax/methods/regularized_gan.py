"""One-way GANs held near their input: the CycleGAN paper's SimGAN and feature-loss baselines.

Zhu et al. 2017 (§5.1.2) compare CycleGAN with "SimGAN" (Shrivastava et al. 2017): a
generator G: X → Y trained with the adversarial loss plus λ‖x − G(x)‖₁, a penalty on
changing the pixels; and with "feature loss + GAN", the same with the L1 distance taken
between VGG-16 relu4_2 features of x and G(x) instead. Both use CycleGAN's networks and
training details: the ResNet generator, the 70×70 PatchGAN judging domain B, LSGAN,
Adam, the linear-decay schedule and the image pool. `simgan.py` and `feature_gan.py`
each define their `METHOD` from this module; they differ only in the content term.
Like pix2pix, a model translates one way, `config.direction` (X = A for 'AtoB', the
default; X = B for 'BtoA'), so the comparison fills both of the paper's tables.

The step follows CycleGAN's order: G first with D fixed, then D on the real B batch and
on G's fakes (made before G's update) drawn through the pool. VGG's weights are frozen:
they live in the train state's `content_net` (so the step reads them as an input and a
resume finds them in the checkpoint), never in the optimiser.
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
from cyclegan_jax.methods import cycle_gan
from cyclegan_jax.methods import image_pool
from cyclegan_jax.methods import losses
from cyclegan_jax.methods import one_way
from cyclegan_jax.methods import step_parts
from cyclegan_jax.nets import models
from cyclegan_jax.nets import vgg

PyTree = Any
GENERATORS = ('G',)
CONTENTS = ('pixel', 'vgg')  # ‖x − G(x)‖₁ on pixels, or on VGG-16 relu4_2 features.
# CycleGAN's options these steps have no place for: (field, its off value, why).
UNSUPPORTED = (
  ('model.norm', 'instance', 'the step keeps no batch-norm statistics'),
  ('model.norm_D', 'instance', 'the step keeps no batch-norm statistics'),
  ('model.use_dropout', False, 'the step draws no dropout masks'),
  ('model.spectral_norm_D', False, "the baselines use the paper's plain critic"),
  ('loss.r1_gamma', 0.0, 'the baselines have no R1 penalty'),
  ('loss.lambda_swd', 0.0, 'the patch-distribution loss is CycleGAN-only here'),
  ('augment.policy', '', 'DiffAugment is CycleGAN-only here'),
)


def check_options(config: ml_collections.ConfigDict, name: str) -> None:
  """Raises a one-line ValueError for a CycleGAN or pix2pix option that is on."""
  for field, off, why in UNSUPPORTED:
    group, key = field.split('.')
    if group in config and config[group].get(key, off) != off:
      raise ValueError(
        f'{field}={config[group][key]!r} does not apply to method={name} ({why}): '
        f'drop the override or pass --config.{field}={off!r}.'
      )


def adam(config: ml_collections.ConfigDict, rate: optax.Schedule):
  """The paper's Adam (β₁ 0.5, β₂ 0.999) on `rate`."""
  return optax.adam(rate, b1=config.optim.beta1, b2=config.optim.beta2)


def critic_from_config(config: ml_collections.ConfigDict) -> nn.Module:
  """The PatchGAN of `config.model`, refused in one line when the crop is too small."""
  discriminator = models.discriminator_from_config(config.model)
  if hasattr(discriminator, 'num_layers'):
    cycle_gan.check_discriminator_fits(discriminator, config.crop_size)
  return discriminator


# --------------------------------------------------------------------------------------
# Networks and state
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Networks:
  """The static half of training: modules, optimisers, schedule and loss settings."""

  generator: nn.Module  # G: source → target of `direction`.
  discriminator: nn.Module  # D judges the target domain.
  tx_g: optax.GradientTransformation
  tx_d: optax.GradientTransformation
  schedule: optax.Schedule
  gan_mode: str
  content: str  # One of CONTENTS.
  lambda_content: float
  content_term: str  # The logged name of the weighted content term.
  method: str
  direction: str  # 'AtoB' or 'BtoA'.
  source_channels: int  # Of the images G reads.
  # feature_gan: VGG-16's {'params'} (host arrays), copied into the state at init.
  content_variables: PyTree = None
  ema_decay: float = 0.0
  ema_start_step: int = 0


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a pytree of global arrays."""

  step: jax.Array  # int32 scalar, replicated.
  params: dict[str, PyTree]  # {'G', 'D'}, replicated.
  opt_state_G: optax.OptState  # noqa: N815
  opt_state_D: optax.OptState  # noqa: N815
  # {target domain}: G's fakes; per device, sharded.
  pools: dict[str, image_pool.ImagePool]
  rng: jax.Array  # [devices, 2] uint32 key data; per device, sharded.
  # VGG-16's frozen variables for the feature term, replicated; {} for the pixel term.
  content_net: dict[str, PyTree]
  ema: dict[str, PyTree] = dataclasses.field(default_factory=dict)  # {'G'} or {}.


def networks_from_config(
  config: ml_collections.ConfigDict,
  schedule: optax.Schedule,
  *,
  name: str,
  content: str,
  content_term: str,
) -> Networks:
  """The method `name`'s networks, optimisers and settings from `config`.

  Raises:
    ValueError: an option that does not apply is on, or (content 'vgg') no VGG-16
      weights file was given (one line each).
  """
  losses.check_gan_mode(config.loss.gan_mode)
  check_options(config, name)
  if content not in CONTENTS:
    raise ValueError(f'content must be one of {CONTENTS}, got {content!r}.')
  direction = one_way.config_direction(config)
  variables = None
  if content == 'vgg' and config.baseline.lambda_content > 0:
    variables = vgg.require_weights(config.baseline.get('vgg_weights'), name)
  return Networks(
    generator=one_way.generators_from_config(config.model, direction=direction)['G'],
    discriminator=critic_from_config(config),
    tx_g=adam(config, schedule),
    tx_d=adam(config, step_parts.scaled_schedule(schedule, config.optim.lr_D_scale)),
    schedule=schedule,
    gan_mode=config.loss.gan_mode,
    content=content,
    lambda_content=float(config.baseline.lambda_content),
    content_term=content_term,
    method=name,
    direction=direction,
    source_channels=channels_lib.domain_channels(config.model)[
      one_way.sides(direction)[0]
    ],
    content_variables=variables,
    ema_decay=float(config.ema.decay) if 'ema' in config else 0.0,
    ema_start_step=int(config.ema.start_step) if 'ema' in config else 0,
  )


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
  h, w = image_shape[:2]
  source_shape = (h, w, networks.source_channels)
  target_shape = (h, w, networks.generator.output_channels)
  key_g, key_d = jax.random.split(params_key)
  params = {
    'G': networks.generator.init(key_g, jnp.zeros((1, *source_shape)))['params'],
    'D': networks.discriminator.init(key_d, jnp.zeros((1, *target_shape)))['params'],
  }
  target = one_way.sides(networks.direction)[1]
  pools = step_parts.per_device_copies(
    {target: image_pool.init_pool(pool_size, target_shape)}, num_devices
  )
  content_net = (
    jax.tree.map(jnp.asarray, networks.content_variables)
    if networks.content_variables is not None
    else {}
  )
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state_G=networks.tx_g.init(params['G']),
    opt_state_D=networks.tx_d.init(params['D']),
    pools=pools,
    rng=rng,
    content_net=content_net,
    ema=step_parts.initial_ema(params, GENERATORS) if networks.ema_decay > 0 else {},
  )


# --------------------------------------------------------------------------------------
# Losses and the per-device step
# --------------------------------------------------------------------------------------


def content_loss(
  content: str, variables: PyTree, source: jax.Array, translated: jax.Array
) -> jax.Array:
  """Mean ‖source − translated‖₁ over pixels ('pixel') or VGG-16 relu4_2 features
  ('vgg', `variables` VGG's {'params'})."""
  if content == 'pixel':
    return losses.l1_loss(translated, source)
  return vgg.feature_distance(variables, source, translated)


def generator_loss(
  g_params: PyTree,
  d_params: PyTree,
  content_net: PyTree,
  real_a: jax.Array,
  *,
  networks: Networks,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], jax.Array]]:
  """GAN(D(G(x)), real) + λ·content(x, G(x)), with D fixed: (loss, (terms, G(x)))."""
  fake_b = networks.generator.apply({'params': g_params}, real_a)
  pred = networks.discriminator.apply({'params': d_params}, fake_b)
  terms = {'G_GAN': losses.gan_loss(pred, True, networks.gan_mode)}
  total = terms['G_GAN']
  if networks.lambda_content > 0:
    terms[networks.content_term] = networks.lambda_content * content_loss(
      networks.content, content_net, real_a, fake_b
    )
    total = total + terms[networks.content_term]
  terms['loss_G'] = total
  return total, (terms, fake_b)


def critic_loss(
  d_params: PyTree,
  real_b: jax.Array,
  fake_b: jax.Array,
  *,
  critic: nn.Module,
  gan_mode: str,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """CycleGAN's halved critic loss on real B and (pooled) fakes, with its scores."""
  pred_real = critic.apply({'params': d_params}, real_b)
  pred_fake = critic.apply({'params': d_params}, fake_b)
  terms = critic_terms(pred_real, pred_fake, gan_mode)
  return terms['loss_D'], terms


def critic_terms(
  pred_real: jax.Array, pred_fake: jax.Array, gan_mode: str
) -> dict[str, jax.Array]:
  """D's halved loss on what it should call real and fake, with its mean scores."""
  return {
    'loss_D': losses.discriminator_loss(pred_real, pred_fake, gan_mode),
    'D_real': losses.discriminator_score(pred_real, gan_mode),
    'D_fake': losses.discriminator_score(pred_fake, gan_mode),
  }


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  networks: Networks,
  axis_name: str | None = step_parts.AXIS,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One iteration on this device's shard: G with D fixed, then D on pooled fakes.

  Gradients and metrics are averaged over `axis_name` (None: one device).
  """
  mean, local = step_parts.replica_ops(axis_name)
  source, target = one_way.sides(networks.direction)
  real_x, real_y = batch[source], batch[target]
  g_grads, (g_terms, fake_y) = jax.grad(generator_loss, has_aux=True)(
    local(state.params['G']),
    local(state.params['D']),
    state.content_net,
    real_x,
    networks=networks,
  )
  new_g, opt_state_g = step_parts.apply_updates(
    networks.tx_g, state.params['G'], state.opt_state_G, mean(g_grads)
  )

  rng, pools, pooled = query_pools(state, {target: fake_y})
  d_grads, d_terms = jax.grad(critic_loss, has_aux=True)(
    local(state.params['D']),
    real_y,
    pooled[target],
    critic=networks.discriminator,
    gan_mode=networks.gan_mode,
  )
  new_d, opt_state_d = step_parts.apply_updates(
    networks.tx_d, state.params['D'], state.opt_state_D, mean(d_grads)
  )

  params = {'G': new_g, 'D': new_d}
  metrics, ema = metrics_and_ema(state, networks, params, {**g_terms, **d_terms}, mean)
  new_state = state.replace(
    step=state.step + 1,
    params=params,
    opt_state_G=opt_state_g,
    opt_state_D=opt_state_d,
    pools=pools,
    rng=rng,
    ema=ema,
  )
  return new_state, metrics


def query_pools(
  state: Any, images: dict[str, jax.Array]
) -> tuple[jax.Array, dict[str, image_pool.ImagePool], dict[str, jax.Array]]:
  """Draws each of `images` (by pool name) through this device's pool of that name,
  as CycleGAN's step does: (the next per-device key, the pools, the images for D)."""
  key = jax.random.wrap_key_data(state.rng[0])
  key, *keys = jax.random.split(key, 1 + len(images))
  pools, pooled = {}, {}
  for (name, fresh), pool_key in zip(images.items(), keys):
    pool, pooled[name] = image_pool.query(
      step_parts.local_pool(state.pools[name]), jax.lax.stop_gradient(fresh), pool_key
    )
    pools[name] = step_parts.global_pool(pool)
  return jax.random.key_data(key)[None], pools, pooled


def metrics_and_ema(
  state: Any,
  networks: Any,
  params: dict[str, PyTree],
  terms: dict[str, jax.Array],
  mean: Any,
) -> tuple[dict[str, jax.Array], dict[str, PyTree]]:
  """(the device-averaged terms with the learning rate, the weight average after this
  update of `params`)."""
  metrics = mean(terms)
  metrics['learning_rate'] = networks.schedule(state.step)
  ema = step_parts.update_ema(
    state.ema,
    params,
    state.step + 1,
    decay=networks.ema_decay,
    start_step=networks.ema_start_step,
  )
  return metrics, ema


def make_method(name: str, *, content: str, content_term: str) -> base.Method:
  """The `base.Method` of a one-way GAN with content term `content` ('pixel'|'vgg')."""

  def create_networks(config, schedule):
    return networks_from_config(
      config, schedule, name=name, content=content, content_term=content_term
    )

  return base.Method(
    name=name,
    create_networks=create_networks,
    init_state=init_state,
    train_step=train_step,
    per_device_fields=('pools', 'rng'),
    generators=GENERATORS,
    directions={'AtoB': ('G', None)},
    generator_modules=one_way.generators_from_config,
    console_terms=('G_GAN', content_term, 'loss_D'),
    configure_fn=one_way.configure,
  )
