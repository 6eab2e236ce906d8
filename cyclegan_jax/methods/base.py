"""The method interface: what a training method declares for the shared code to run it.

In the spirit of the official code's `BaseModel` (a model declares its networks,
`optimize_parameters` and visuals), but functional: a `Method` is a frozen record of
functions and names. The shared parts (data, the jitted `shard_map` step, the loop,
checkpoints, evaluation, translate, export) reach everything method-specific through
it and never name a network.

A method's train state is a `flax.struct` dataclass with at least the `State` fields.
Its fields listed in `per_device_fields` are sharded on the `data` axis (one slice per
device, e.g. image pools and keys); all others are replicated. Checkpoints store
`params`, `ema` (when not empty), the per-device fields and the other replicated fields,
each under its field name, leaving out fields with no arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol

import jax
import ml_collections
import optax

PyTree = Any
Metrics = dict[str, jax.Array]
DOMAINS = ('A', 'B')
# The directions between the two domains, as translate, export and evaluation name them.
DIRECTIONS = ('AtoB', 'BtoA')


class State(Protocol):
  """The fields of a method's train state that the shared code reads."""

  step: jax.Array  # int32 scalar, replicated: updates done.
  params: dict[str, PyTree]  # Every network's parameters by name, replicated.
  rng: jax.Array  # [devices, 2] uint32 key data; per device (a per-device field).
  ema: dict[str, PyTree]  # The generators' weight average by name; {} when off.

  def replace(self, **changes: Any) -> State: ...


class Networks(Protocol):
  """The static half a method builds from the config (modules, optimisers, ...)."""

  method: str  # The method's registry name, so the shared code can find it again.


@dataclasses.dataclass(frozen=True)
class Method:
  """One training method (CycleGAN, ...), as the shared code sees it.

  Attributes:
    name: its registry name (`config.method`).
    create_networks: (config, the learning-rate schedule) -> its `Networks`.
    init_state: (networks, *, params_key, rng, image_shape, pool_size, num_devices) ->
      its initial train state; `image_shape` is domain A's (H, W, C), `rng` the
      per-device keys to keep in `State.rng`; run under `jax.jit` by the shared code.
    train_step: (state, batch, *, networks, axis_name) -> (state, metrics): one update
      on this device's shard of the batch ({'A', 'B'} images), run inside `shard_map`;
      gradients and metrics are averaged with `lax.pmean` over `axis_name` (None: a
      plain single-device step).
    per_device_fields: the state fields sharded on the data axis (always 'rng').
    generators: the params items inference uses (and the weight average keeps).
    directions: {'AtoB' | 'BtoA': (generator, the generator that maps back or None)};
      a direction absent here is one the method does not translate.
    generator_modules: (a config's `model` fields) -> {generator name: Linen module}.
    console_terms: the logged terms shown on the console line, in order.
    missing_hint: (generator, direction) -> what to do when a checkpoint lacks it.
    configure_fn: (the method, a config or a checkpoint's saved config) -> the method
      as that config sets it up (pix2pix: its one direction); None: as it is.
    translate_fn: for a method whose translation is not its generator's forward pass
      (CoGAN's latent inversion): (generator modules by name, direction, the test
      mode, the config whose settings apply) -> the jitted (params of the direction's
      generator, [N, H, W, C] images in [-1, 1], its batch_stats or None) -> the
      translations. None: each direction is its generator's forward pass. Such a
      translation is an optimisation, not a network: tiling and export refuse it.
  """

  name: str
  create_networks: Callable[[ml_collections.ConfigDict, optax.Schedule], Networks]
  init_state: Callable[..., State]
  train_step: Callable[..., tuple[State, Metrics]]
  per_device_fields: tuple[str, ...]
  generators: tuple[str, ...]
  directions: Mapping[str, tuple[str, str | None]]
  generator_modules: Callable[[Any], dict[str, Any]]
  console_terms: tuple[str, ...] = ()
  missing_hint: Callable[[str, str], str] = lambda name, direction: (
    f'use a checkpoint that holds {name} to translate {direction}'
  )
  configure_fn: Callable[[Method, Mapping[str, Any]], Method] | None = None
  translate_fn: Callable[..., Callable[..., jax.Array]] | None = None

  def configure(self, config: Mapping[str, Any]) -> Method:
    """The method as `config` (a ConfigDict or a saved config's dict) sets it up."""
    return self.configure_fn(self, config) if self.configure_fn else self

  def generator_for(self, direction: str) -> str:
    """The generator that translates `direction`.

    Raises:
      ValueError: the method does not translate `direction` (one line).
    """
    if direction not in self.directions:
      raise ValueError(
        f'A {self.name} model translates {", ".join(self.directions)} only, not '
        f'{direction}: pass --direction={next(iter(self.directions))}.'
      )
    return self.directions[direction][0]

  def source_domain(self, name: str) -> str:
    """The domain ('A' or 'B') whose images generator `name` reads."""
    for direction, (forward, backward) in self.directions.items():
      if name == forward:
        return direction[0]
      if name == backward:
        return direction[-1]
    raise ValueError(f'{name!r} is not a generator of {self.name}.')

  def source_domains(self) -> tuple[str, ...]:
    """The domains the method's translations read, in DOMAINS order."""
    return tuple(d for d in DOMAINS if any(k[0] == d for k in self.directions))
