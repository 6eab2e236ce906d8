"""CoGAN (Liu and Tuzel 2016) as a translation baseline, as the CycleGAN paper ran it.

Two GANs trained together on unpaired images of A and B: one noise vector z renders
an image of each domain through generators whose early layers are tied, and each
domain's critic shares its late layers with the other's (`nets/cogan.py`). The step
is the public PyTorch trainer's: the critics on the real batches of both domains and
on the generators' images from fresh noise (each half a GAN loss; vanilla GAN = its
two-way softmax), one Adam step; then the generators from new noise against the
updated critics. Adam(2e-4, 0.5, 0.999) with L2 weight decay on the weights, as the
public code's solvers.

A CoGAN has no image-to-image network, so translation is an optimisation: A→B finds
the z whose A image reconstructs the input (Adam on z of the squared error, from
`invert_restarts` draws of the prior, the best kept) and renders G_B(z); B→A the
other way round (`translate_fn`). The generator runs with its running batch-norm
statistics there, so each image's result is its own.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.methods import base
from cyclegan_jax.methods import losses
from cyclegan_jax.methods import step_parts
from cyclegan_jax.nets import cogan as nets

PyTree = Any
NAME = 'cogan'
GENERATORS = ('G',)
CONSOLE_TERMS = ('G_A', 'G_B', 'D_A', 'D_B')
NOISE_PRIORS = ('uniform', 'normal')
# Folded into the seed's key for the critics' and the generators' noise.
_D_NOISE, _G_NOISE = 0x636F6431, 0x636F6732
# Inversion settings used where a config has no `cogan` group (configs/default.py's).
INVERT_DEFAULTS = {'invert_steps': 500, 'invert_lr': 0.05, 'invert_restarts': 4}


# --------------------------------------------------------------------------------------
# Networks and state
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Networks:
  """The static half of training: the coupled modules, optimisers and settings."""

  generator: nets.CoupledGenerator
  discriminator: nets.CoupledCritic
  tx_g: optax.GradientTransformation
  tx_d: optax.GradientTransformation
  schedule: optax.Schedule
  gan_mode: str = 'vanilla'
  noise: str = 'uniform'
  seed: int = 0  # The noise's: the same z for every device count.
  ema_decay: float = 0.0
  ema_start_step: int = 0
  method: str = NAME


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training; a pytree of global arrays."""

  step: jax.Array  # int32 scalar, replicated.
  params: dict[str, PyTree]  # {'G': the coupled generators, 'D': the coupled critics}.
  batch_stats: dict[str, PyTree]  # {'G', 'D'}: running batch-norm statistics.
  opt_state_G: optax.OptState  # noqa: N815
  opt_state_D: optax.OptState  # noqa: N815
  rng: jax.Array  # [devices, 2] uint32 key data; per device, sharded.
  ema: dict[str, PyTree] = dataclasses.field(default_factory=dict)  # {'G'} or {}.


def _group(config: Mapping[str, Any]) -> Mapping[str, Any]:
  """The config's `cogan` fields (a ConfigDict or a saved config's dict)."""
  return config.get('cogan') or {}


def generators_from_config(
  model_config: Any, *, cogan: Mapping[str, Any], size: int
) -> dict[str, nn.Module]:
  """{'G': the coupled generator} for `size`² images and the `model` channels."""
  nc = channels_lib.domain_channels(model_config)
  return {
    'G': nets.CoupledGenerator(
      size=size,
      nz=int(cogan['nz']),
      ngf=int(cogan['ngf']),
      max_filters=int(cogan['max_filters']),
      unshared=int(cogan['unshared_g']),
      channels=(nc['A'], nc['B']),
      dtype=model_config.get('dtype', 'float32'),
    )
  }


def _adam(config: ml_collections.ConfigDict, rate: optax.Schedule):
  """Adam with L2 decay on the kernels (the solvers' `decay_mult: 1` on weights only)."""
  kernels = lambda params: jax.tree_util.tree_map_with_path(
    lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params
  )
  return optax.chain(
    optax.add_decayed_weights(config.cogan.weight_decay, mask=kernels),
    optax.adam(rate, b1=config.optim.beta1, b2=config.optim.beta2),
  )


def create_networks(
  config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> Networks:
  """CoGAN's networks and optimisers from `config` (`config.cogan`, crop_size)."""
  losses.check_gan_mode(config.loss.gan_mode)
  check_options(config)
  c = config.cogan
  generator = generators_from_config(config.model, cogan=c, size=config.crop_size)['G']
  critic = nets.CoupledCritic(
    size=config.crop_size,
    ndf=c.ndf,
    max_filters=c.max_filters,
    unshared=c.unshared_d,
    dtype=config.model.dtype,
  )
  # Raises the one-line errors for a bad size or split before anything compiles.
  nets.split(generator.layers(), c.unshared_g, tied_first=True)
  nets.split(critic.layers(), c.unshared_d, tied_first=False)
  return Networks(
    generator=generator,
    discriminator=critic,
    tx_g=_adam(config, schedule),
    tx_d=_adam(config, step_parts.scaled_schedule(schedule, config.optim.lr_D_scale)),
    schedule=schedule,
    gan_mode=config.loss.gan_mode,
    noise=c.noise,
    seed=int(config.seed),
    ema_decay=float(config.ema.decay),
    ema_start_step=int(config.ema.start_step),
  )


# CycleGAN's options the CoGAN step has no place for: (field, its off value, why).
_UNSUPPORTED = (
  ('model.spectral_norm_D', False, 'the coupled critics are their own networks'),
  ('loss.r1_gamma', 0.0, 'the public CoGAN has no R1 penalty'),
  ('loss.lambda_swd', 0.0, 'the patch-distribution loss is CycleGAN-only here'),
  ('augment.policy', '', 'DiffAugment is CycleGAN-only here'),
  ('dataset_mode', 'unaligned', 'CoGAN learns from unpaired images'),
)


def check_options(config: ml_collections.ConfigDict) -> None:
  """Raises a one-line ValueError for an option that is on but means nothing here."""
  for field, off, why in _UNSUPPORTED:
    *groups, name = field.split('.')
    node = config
    for group in groups:
      node = node.get(group, {})
    if node.get(name, off) != off:
      raise ValueError(
        f'{field}={node[name]!r} does not apply to method=cogan ({why}): drop the '
        f'override or pass --config.{field}={off!r}.'
      )


def sample_noise(key: jax.Array, shape: tuple[int, ...], prior: str) -> jax.Array:
  """z from the prior: uniform in [-1, 1] (the Caffe CelebA model's) or standard normal."""
  if prior == 'uniform':
    return jax.random.uniform(key, shape, jnp.float32, -1.0, 1.0)
  return jax.random.normal(key, shape, jnp.float32)


def init_state(
  networks: Networks,
  *,
  params_key: jax.Array,
  rng: jax.Array,
  image_shape: tuple[int, int, int],
  pool_size: int,
  num_devices: int,
) -> TrainState:
  """The state before any step (`base.Method.init_state`); CoGAN keeps no pool."""
  del pool_size, num_devices
  h, w = image_shape[:2]
  key_g, key_d = jax.random.split(params_key)
  g = networks.generator.init(key_g, networks.generator.example_input())
  a, b = networks.generator.channels
  d = networks.discriminator.init(
    key_d, jnp.zeros((1, h, w, a), jnp.float32), jnp.zeros((1, h, w, b), jnp.float32)
  )
  params = {'G': g['params'], 'D': d['params']}
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    batch_stats={'G': g['batch_stats'], 'D': d['batch_stats']},
    opt_state_G=networks.tx_g.init(params['G']),
    opt_state_D=networks.tx_d.init(params['D']),
    rng=rng,
    ema=step_parts.initial_ema(params, GENERATORS) if networks.ema_decay > 0 else {},
  )


# --------------------------------------------------------------------------------------
# The per-device step
# --------------------------------------------------------------------------------------


def _train_apply(module: nn.Module, params: PyTree, stats: PyTree, *inputs):
  """(module(*inputs) in train mode, its updated running statistics)."""
  out, mutated = module.apply(
    {'params': params, 'batch_stats': stats}, *inputs, mutable=['batch_stats']
  )
  return out, mutated['batch_stats']


def discriminator_losses(
  d_params: PyTree,
  d_stats: PyTree,
  reals: tuple[jax.Array, jax.Array],
  fakes: tuple[jax.Array, jax.Array],
  *,
  critic: nets.CoupledCritic,
  gan_mode: str,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], PyTree]]:
  """The public trainer's `dis_update`: (loss_D, (terms, D's statistics)).

  Its loss is the mean over both domains of real and fake terms, each a GAN loss
  (the real pair first, then the fakes, as two batches like its two calls).
  """
  (real_a, real_b), d_stats = _train_apply(critic, d_params, d_stats, *reals)
  (fake_a, fake_b), d_stats = _train_apply(critic, d_params, d_stats, *fakes)
  terms = {
    'D_A': losses.gan_loss(real_a, True, gan_mode)
    + losses.gan_loss(fake_a, False, gan_mode),
    'D_B': losses.gan_loss(real_b, True, gan_mode)
    + losses.gan_loss(fake_b, False, gan_mode),
  }
  return 0.5 * (terms['D_A'] + terms['D_B']), (terms, d_stats)


def generator_losses(
  g_params: PyTree,
  g_stats: PyTree,
  d_params: PyTree,
  d_stats: PyTree,
  z: jax.Array,
  *,
  generator: nets.CoupledGenerator,
  critic: nets.CoupledCritic,
  gan_mode: str,
) -> tuple[jax.Array, tuple[dict[str, jax.Array], PyTree, PyTree]]:
  """The public trainer's `gen_update`: (loss_G, (terms, G's and D's statistics))."""
  fakes, g_stats = _train_apply(generator, g_params, g_stats, z)
  (logit_a, logit_b), d_stats = _train_apply(critic, d_params, d_stats, *fakes)
  terms = {
    'G_A': losses.gan_loss(logit_a, True, gan_mode),
    'G_B': losses.gan_loss(logit_b, True, gan_mode),
  }
  return 0.5 * (terms['G_A'] + terms['G_B']), (terms, g_stats, d_stats)


def step_noise(
  networks: Networks, step: jax.Array, stream: int, n: int, axis_name: str | None
) -> jax.Array:
  """This device's rows of the global batch's noise of one stream at `step`.

  The whole batch's z is drawn from the seed and the step, and each device takes its
  slice: any device count draws the same z for the same row, so a run is the same
  on 1 or 4 devices and on resume.
  """
  devices = jax.lax.axis_size(axis_name) if axis_name else 1
  index = jax.lax.axis_index(axis_name) if axis_name else 0
  key = jax.random.fold_in(
    jax.random.fold_in(jax.random.key(networks.seed), stream), step
  )
  z = sample_noise(key, (devices * n, networks.generator.nz), networks.noise)
  return jax.lax.dynamic_slice_in_dim(z, index * n, n)


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  *,
  networks: Networks,
  axis_name: str | None = step_parts.AXIS,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One CoGAN iteration on this device's shard of the unpaired batch.

  The critics are updated first, on the real images and on the generators' images of
  fresh noise (detached); then the generators, on new noise, against the updated
  critics. Batch norms take statistics over the global batch (`axis_name`); gradients
  and metrics are averaged over it.
  """
  mean, local = step_parts.replica_ops(axis_name)
  generator = networks.generator.clone(axis_name=axis_name)
  critic = networks.discriminator.clone(axis_name=axis_name)
  noise = lambda stream: step_noise(
    networks, state.step, stream, batch['A'].shape[0], axis_name
  )

  fakes, g_stats = _train_apply(
    generator, state.params['G'], state.batch_stats['G'], noise(_D_NOISE)
  )
  d_grads, (d_terms, d_stats) = jax.grad(discriminator_losses, has_aux=True)(
    local(state.params['D']),
    state.batch_stats['D'],
    (batch['A'], batch['B']),
    jax.tree.map(jax.lax.stop_gradient, fakes),
    critic=critic,
    gan_mode=networks.gan_mode,
  )
  new_d, opt_state_d = step_parts.apply_updates(
    networks.tx_d, state.params['D'], state.opt_state_D, mean(d_grads)
  )

  g_grads, (g_terms, g_stats, d_stats) = jax.grad(generator_losses, has_aux=True)(
    local(state.params['G']),
    g_stats,
    new_d,
    d_stats,
    noise(_G_NOISE),
    generator=generator,
    critic=critic,
    gan_mode=networks.gan_mode,
  )
  new_g, opt_state_g = step_parts.apply_updates(
    networks.tx_g, state.params['G'], state.opt_state_G, mean(g_grads)
  )

  metrics = mean({**g_terms, **d_terms})
  metrics['learning_rate'] = networks.schedule(state.step)
  params = {'G': new_g, 'D': new_d}
  new_state = state.replace(
    step=state.step + 1,
    params=params,
    batch_stats={'G': g_stats, 'D': d_stats},
    opt_state_G=opt_state_g,
    opt_state_D=opt_state_d,
    ema=step_parts.update_ema(
      state.ema,
      params,
      state.step + 1,
      decay=networks.ema_decay,
      start_step=networks.ema_start_step,
    ),
  )
  return new_state, metrics


# --------------------------------------------------------------------------------------
# Translation by latent inversion
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Inversion:
  """How a source image's z is found: Adam on z for `steps` steps at `lr`, from
  `restarts` draws of the `prior` (seeded by `seed` and the image), the best kept."""

  steps: int = INVERT_DEFAULTS['invert_steps']
  lr: float = INVERT_DEFAULTS['invert_lr']
  restarts: int = INVERT_DEFAULTS['invert_restarts']
  prior: str = 'uniform'
  seed: int = 0

  @classmethod
  def from_config(cls, config: Mapping[str, Any], seed: int = 0) -> Inversion:
    """The `cogan.invert_*` fields of a config (or a saved config's dict)."""
    group = {**INVERT_DEFAULTS, 'noise': 'uniform', **dict(_group(config))}
    return cls(
      steps=int(group['invert_steps']),
      lr=float(group['invert_lr']),
      restarts=int(group['invert_restarts']),
      prior=str(group['noise']),
      seed=seed,
    )


def image_key(seed: int, image: jax.Array) -> jax.Array:
  """A key from `seed` and the image's 8-bit pixels: the same image starts from the
  same draws alone, in any batch, on any rerun."""
  q = jnp.round((image.astype(jnp.float32) + 1.0) * 127.5).astype(jnp.uint32).ravel()
  weights = jnp.arange(q.size, dtype=jnp.uint32) * jnp.uint32(2654435761) + 1
  return jax.random.fold_in(jax.random.key(seed), jnp.sum(q * weights))


def invert(
  generator: nets.CoupledGenerator,
  variables: PyTree,
  images: jax.Array,
  domain: str,
  how: Inversion,
) -> tuple[jax.Array, jax.Array]:
  """(z [N, nz], its squared error [N]): for each image of `domain` the z whose
  `domain` image is closest to it, at the generator's size."""
  render = lambda z: generator.apply(variables, z, True, domain)
  opt = optax.adam(how.lr)

  def errors(z: jax.Array, image: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(render(z) - image[None]), axis=(1, 2, 3))

  def one(image: jax.Array) -> tuple[jax.Array, jax.Array]:
    z = sample_noise(image_key(how.seed, image), (how.restarts, generator.nz), how.prior)

    def update(_, carry):
      z, opt_state = carry
      grads = jax.grad(lambda z: jnp.sum(errors(z, image)))(z)
      steps, opt_state = opt.update(grads, opt_state)
      z = optax.apply_updates(z, steps)
      # The uniform prior's support: z outside it renders what training never saw.
      return (jnp.clip(z, -1.0, 1.0) if how.prior == 'uniform' else z), opt_state

    z, _ = jax.lax.fori_loop(0, how.steps, update, (z, opt.init(z)))
    err = errors(z, image)
    best = jnp.argmin(err)
    return z[best], err[best]

  return jax.vmap(one)(images)


def _resize(images: jax.Array, height: int, width: int) -> jax.Array:
  if images.shape[1:3] == (height, width):
    return images
  shape = (images.shape[0], height, width, images.shape[-1])
  return jax.image.resize(images, shape, 'linear', antialias=True)


def translate_fn(
  modules: dict[str, nn.Module],
  direction: str,
  mode: Any,
  config: Mapping[str, Any],
) -> Callable[..., jax.Array]:
  """`base.Method.translate_fn`: the jitted (params, [N, H, W, C] in [-1, 1], stats)
  -> [N, H, W, C'] of `direction` by latent inversion.

  Images of another size than the generator's are resized to it (bilinear,
  antialiased) and the translation back to theirs. Always with the running batch-norm
  statistics (`mode`'s train-mode statistics would tie the images of a batch).
  """
  generator = modules['G']
  source, target = direction[0], direction[-1]
  how = Inversion.from_config(config, seed=getattr(mode, 'seed', 0))

  @jax.jit
  def run(params: PyTree, images: jax.Array, stats: PyTree) -> jax.Array:
    variables = {'params': params, 'batch_stats': stats}
    h, w = images.shape[1:3]
    side = generator.size
    z, _ = invert(generator, variables, _resize(images, side, side), source, how)
    fake = generator.apply(variables, z, True, target)
    return _resize(fake, h, w).astype(images.dtype)

  return lambda params, images, stats=None: run(params, images, stats or {})


def configure(method: base.Method, config: Mapping[str, Any]) -> base.Method:
  """The method with its generator built at the config's size and `cogan` fields."""
  group = {**_default_group(), **dict(_group(config))}
  size = int(config.get('crop_size') or 64)
  return dataclasses.replace(
    method,
    generator_modules=functools.partial(generators_from_config, cogan=group, size=size),
  )


def _default_group() -> dict[str, Any]:
  """configs/default.py's `cogan` fields (a checkpoint saved with them has its own)."""
  from configs import default  # pylint: disable=g-import-not-at-top  # No JAX there.

  return default.get_config().cogan.to_dict()


METHOD = base.Method(
  name=NAME,
  create_networks=create_networks,
  init_state=init_state,
  train_step=train_step,
  per_device_fields=('rng',),
  generators=GENERATORS,
  directions={'AtoB': ('G', None), 'BtoA': ('G', None)},
  generator_modules=lambda model_config: generators_from_config(
    model_config, cogan=_default_group(), size=64
  ),
  console_terms=CONSOLE_TERMS,
  configure_fn=configure,
  translate_fn=translate_fn,
)
