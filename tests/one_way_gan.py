"""A toy second method for test_methods.py: a one-directional GAN, A→B only.

One generator 'G' maps A to B, one PatchGAN critic 'D' judges domain B; no cycle, no
pool, no options. It touches no shared module: test_methods.py registers it with one
line (`methods.METHODS[NAME] = __name__`) and trains, checkpoints, evaluates and
translates it through the shared code.
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
from cyclegan_jax.methods import losses
from cyclegan_jax.methods import step_parts
from cyclegan_jax.nets import models

PyTree = Any
NAME = 'one_way_gan'


@dataclasses.dataclass(frozen=True)
class Networks:
  generator: nn.Module
  critic: nn.Module
  tx_g: optax.GradientTransformation
  tx_d: optax.GradientTransformation
  schedule: optax.Schedule
  method: str = NAME


@flax.struct.dataclass
class State:
  step: jax.Array
  params: dict[str, PyTree]  # {'G', 'D'}.
  opt_state_g: optax.OptState
  opt_state_d: optax.OptState
  rng: jax.Array  # Kept for the interface; this method draws nothing.
  ema: dict[str, PyTree] = dataclasses.field(default_factory=dict)


def generator_modules(model_config: Any) -> dict[str, nn.Module]:
  nc = channels_lib.domain_channels(model_config)
  return {'G': models.generator_from_config(model_config, nc['B'])}


def create_networks(config: ml_collections.ConfigDict, schedule: optax.Schedule):
  adam = optax.adam(schedule, b1=config.optim.beta1, b2=config.optim.beta2)
  return Networks(
    generator=generator_modules(config.model)['G'],
    critic=models.discriminator_from_config(config.model),
    tx_g=adam,
    tx_d=adam,
    schedule=schedule,
  )


def init_state(networks, *, params_key, rng, image_shape, pool_size, num_devices):
  del pool_size, num_devices
  key_g, key_d = jax.random.split(params_key)
  a = jnp.zeros((1, *image_shape), jnp.float32)
  b = jnp.zeros((1, *image_shape[:2], networks.generator.output_channels), jnp.float32)
  params = {
    'G': networks.generator.init(key_g, a)['params'],
    'D': networks.critic.init(key_d, b)['params'],
  }
  return State(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state_g=networks.tx_g.init(params['G']),
    opt_state_d=networks.tx_d.init(params['D']),
    rng=rng,
  )


def train_step(state, batch, *, networks, axis_name=step_parts.AXIS):
  mean, local = step_parts.replica_ops(axis_name)
  g, d = local(state.params['G']), local(state.params['D'])
  critic = lambda p, x: networks.critic.apply({'params': p}, x)

  def g_loss(p):
    fake = networks.generator.apply({'params': p}, batch['A'])
    return losses.gan_loss(critic(d, fake), True, 'lsgan'), fake

  (loss_g, fake), g_grads = jax.value_and_grad(g_loss, has_aux=True)(g)
  new_g, opt_g = step_parts.apply_updates(
    networks.tx_g, state.params['G'], state.opt_state_g, mean(g_grads)
  )
  fake = jax.lax.stop_gradient(fake)
  d_loss = lambda p: losses.discriminator_loss(
    critic(p, batch['B']), critic(p, fake), 'lsgan'
  )
  loss_d, d_grads = jax.value_and_grad(d_loss)(d)
  new_d, opt_d = step_parts.apply_updates(
    networks.tx_d, state.params['D'], state.opt_state_d, mean(d_grads)
  )
  metrics = mean({'loss_G': loss_g, 'loss_D': loss_d})
  metrics['learning_rate'] = networks.schedule(state.step)
  new_state = state.replace(
    step=state.step + 1,
    params={'G': new_g, 'D': new_d},
    opt_state_g=opt_g,
    opt_state_d=opt_d,
  )
  return new_state, metrics


METHOD = base.Method(
  name=NAME,
  create_networks=create_networks,
  init_state=init_state,
  train_step=train_step,
  per_device_fields=('rng',),
  generators=('G',),
  directions={'AtoB': ('G', None)},
  generator_modules=generator_modules,
  console_terms=('loss_G', 'loss_D'),
)
