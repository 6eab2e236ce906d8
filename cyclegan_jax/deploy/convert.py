r"""Converts official PyTorch CycleGAN or pix2pix weights into an Orbax checkpoint.

  python -m cyclegan_jax.deploy.convert --g_AtoB=latest_net_G_A.pth \
      [--g_BtoA=latest_net_G_B.pth] [--d_A=latest_net_D_A.pth --d_B=latest_net_D_B.pth] \
      --workdir=/tmp/horse2zebra_converted
  python -m cyclegan_jax.deploy.convert --g=latest_net_G.pth [--d=latest_net_D.pth] \
      [--direction=BtoA] [--nouse_dropout] --workdir=/tmp/facades_converted

CycleGAN: a model-zoo file `latest_net_G.pth` of the CycleGAN zoo is a single A→B
ResNet generator: pass it as `--g_AtoB`. The workdir gets a step-0 checkpoint whose
`params` item holds the given networks under the reference's names (G_A: A→B, G_B: B→A,
D_A judges domain B, D_B judges domain A) and whose `config` item is
`configs/default.py` with the model fields read from the weights, so
`checkpoints.restore_params(workdir)` and the evaluation tools rebuild the networks.

pix2pix (`--g`, `--d`): the generator (a U-Net, its depth, ngf and norm read from the
keys; or a ResNet) and the conditional critic (basic, n_layers or pixel) are stored as
`G` and `D` in `params`, their batch norms' running statistics in a `batch_stats` item
({'G'[, 'D']}, only networks with batch norm), and the config is `configs/pix2pix.py`
with the fields read from the weights. The files cannot tell whether the generator was
trained with dropout (it has no weights): `--nouse_dropout` for a model trained with
the official `--no_dropout`. `--direction` is the one it was trained with (it decides
which domain's channels are which).

CUT and FastCUT (`--cut`): the generator `latest_net_G.pth` of the official CUT code
(antialiased or not, read from its keys) is stored as `G` with `configs/cut.py` and
the fields read from the weights; `--direction` as for pix2pix.

The .pth files are read without torch and without running their pickles.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any, Sequence

from absl import flags
from absl import logging
import ml_collections

from configs import default as default_config
from cyclegan_jax.cli import app
from cyclegan_jax.cli import errors
from cyclegan_jax.cli import flags as cli_flags
from cyclegan_jax.nets import spec as net_spec
from cyclegan_jax.nets import torch_weights
from cyclegan_jax.train import checkpoints


def define_flags() -> None:
  """The command's flags (defined by its entry point only, never at import)."""
  flags.DEFINE_string(
    'g_AtoB',
    None,
    'Generator A→B (.pth), e.g. latest_net_G_A.pth or a zoo latest_net_G.pth.',
  )
  flags.DEFINE_string('g_BtoA', None, 'Generator B→A (.pth), e.g. latest_net_G_B.pth.')
  flags.DEFINE_string('d_A', None, 'Critic of domain B (.pth), latest_net_D_A.pth.')
  flags.DEFINE_string('d_B', None, 'Critic of domain A (.pth), latest_net_D_B.pth.')
  flags.DEFINE_string('g', None, 'pix2pix generator (.pth), latest_net_G.pth.')
  flags.DEFINE_string('d', None, 'pix2pix critic (.pth), latest_net_D.pth (needs --g).')
  flags.DEFINE_string('cut', None, 'CUT / FastCUT generator (.pth), latest_net_G.pth.')
  cli_flags.define_direction('pix2pix: the direction the model was trained with.')
  flags.DEFINE_bool(
    'use_dropout',
    True,
    'pix2pix: the U-Net was trained with dropout (the official default); '
    '--nouse_dropout for one trained with --no_dropout.',
  )
  cli_flags.define_workdir('Output directory (must hold no checkpoint).', output=True)


def _agree(specs: dict[str, Any], what: str) -> Any:
  """The one spec that all given networks of a kind share (the config has one).

  Channels are compared by `_domain_channels` instead: G_A and G_B map them opposite
  ways, and the two critics judge different domains.
  """
  distinct = {dataclasses.replace(s, **_NO_CHANNELS[what]) for s in specs.values()}
  if len(distinct) > 1:
    raise torch_weights.WeightsFileError(
      f'the {what}s differ in size and one config cannot describe both: '
      + '; '.join(f'{name}: {spec}' for name, spec in specs.items())
    )
  return distinct.pop()


# Spec fields zeroed before `_agree` compares networks of a kind.
_NO_CHANNELS = {
  'generator': {'input_channels': 0, 'output_channels': 0},
  'discriminator': {'input_channels': 0},
}


def _domain_channels(g_specs: dict[str, Any], d_specs: dict[str, Any]) -> dict[str, int]:
  """{'A': input_nc, 'B': output_nc} read off the networks' first and last layers.

  G_A reads A and writes B, G_B the reverse; D_A judges B images, D_B judges A images.
  Domains no network reads stay RGB. Raises when the files disagree or a domain has
  other than 1 or 3 channels.
  """
  seen: dict[str, list[tuple[str, int]]] = {'A': [], 'B': []}
  for name, spec in g_specs.items():
    source, target = ('A', 'B') if name == 'G_A' else ('B', 'A')
    seen[source].append((f'{name} input', spec.input_channels))
    seen[target].append((f'{name} output', spec.output_channels))
  for name, spec in d_specs.items():
    seen['B' if name == 'D_A' else 'A'].append((f'{name} input', spec.input_channels))
  channels = {}
  for domain, found in seen.items():
    values = {c for _, c in found}
    if len(values) > 1:
      raise torch_weights.WeightsFileError(
        f"the networks disagree on domain {domain}'s channels: "
        + ', '.join(f'{where} {c}' for where, c in found)
      )
    value = values.pop() if values else 3
    if value not in (1, 3):
      raise torch_weights.WeightsFileError(
        f'domain {domain} has {value} channels ({found[0][0]}); the checkpoint config '
        'describes 1- or 3-channel domains only (use torch_weights.load_generator)'
      )
    channels[domain] = value
  return channels


def convert(
  workdir: str,
  *,
  g_AtoB: str | None = None,
  g_BtoA: str | None = None,
  d_A: str | None = None,
  d_B: str | None = None,
  g: str | None = None,
  d: str | None = None,
  direction: str = 'AtoB',
  use_dropout: bool = True,
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Reads the given .pth files and writes them as checkpoint step 0 of `workdir`.

  Args:
    workdir: output directory; must not hold a checkpoint yet.
    g_AtoB: CycleGAN generator A→B file (stored as G_A).
    g_BtoA: CycleGAN generator B→A file (stored as G_B).
    d_A: CycleGAN critic of domain B (stored as D_A).
    d_B: CycleGAN critic of domain A (stored as D_B).
    g, d, direction, use_dropout: a pix2pix model instead (`convert_pix2pix`).

  Returns:
    (params, config) as written.

  Raises:
    torch_weights.WeightsFileError: a file is unsafe, damaged, not the network it should
      be, or the networks do not fit one config.
  """
  if g or d:
    if g_AtoB or g_BtoA or d_A or d_B:
      raise torch_weights.WeightsFileError(
        'give either CycleGAN files (--g_AtoB, --g_BtoA, --d_A, --d_B) or a pix2pix '
        'model (--g, --d), not both'
      )
    params, _, config = convert_pix2pix(
      workdir, g=g, d=d, direction=direction, use_dropout=use_dropout
    )
    return params, config
  generators = {name: path for name, path in (('G_A', g_AtoB), ('G_B', g_BtoA)) if path}
  critics = {name: path for name, path in (('D_A', d_A), ('D_B', d_B)) if path}
  if not generators and not critics:
    raise torch_weights.WeightsFileError(
      'nothing to convert: give --g_AtoB and/or --g_BtoA (and optionally --d_A / --d_B)'
    )
  params, g_specs, d_specs = {}, {}, {}
  for name, path in generators.items():
    spec, params[name] = torch_weights.read_generator(path)
    g_specs[name] = spec
    logging.info('%s <- %s: %s', name, path, spec)
  for name, path in critics.items():
    spec, params[name] = torch_weights.read_discriminator(path)
    d_specs[name] = spec
    logging.info('%s <- %s: %s', name, path, spec)

  config = default_config.get_config()
  if g_specs:
    g = _agree(g_specs, 'generator')
    net_g = net_spec.net_g_name(g.num_blocks)
    if net_g is None:
      raise torch_weights.WeightsFileError(
        f'a generator with {g.num_blocks} residual blocks has no netG name (only '
        f'{net_spec.NET_G_BLOCKS}); use '
        'torch_weights.load_generator to run it directly'
      )
    config.model.netG = net_g
    config.model.ngf = g.ngf
  if d_specs:
    d = _agree(d_specs, 'discriminator')
    config.model.ndf = d.ndf
    config.model.netD = 'basic' if d.num_layers == 3 else 'n_layers'
    config.model.n_layers_D = d.num_layers
  channels = _domain_channels(g_specs, d_specs)
  config.model.input_nc, config.model.output_nc = channels['A'], channels['B']
  if channels['A'] != channels['B']:
    config.loss.lambda_identity = 0.0  # Needs equal channels (config_checks).
  config_dict = config.to_dict()
  _write(workdir, params, config_dict)
  return params, config_dict


def _write(
  workdir: str,
  params: dict[str, Any],
  config_dict: dict[str, Any],
  batch_stats: dict[str, Any] | None = None,
) -> None:
  """Writes checkpoint step 0 of `workdir` (with a `batch_stats` item if given)."""
  errors.check_writable_folder(workdir, '--workdir')
  manager = checkpoints.create_manager(workdir)
  if manager.all_steps():
    manager.close()
    raise torch_weights.WeightsFileError(
      f'{checkpoints.checkpoint_dir(workdir)} already holds checkpoints '
      f'{sorted(manager.all_steps())}; convert into an empty workdir'
    )
  try:
    if batch_stats:
      checkpoints.save(
        manager, 0, params=params, batch_stats=batch_stats, config=config_dict
      )
    else:
      checkpoints.save(manager, 0, params=params, config=config_dict)
    manager.wait_until_finished()
  finally:
    manager.close()


def pix2pix_config() -> ml_collections.ConfigDict:
  """`configs/pix2pix.py`'s defaults (the official `--model pix2pix`); where that file
  is absent, the same fields set on `configs/default.py`."""
  try:
    return importlib.import_module('configs.pix2pix').get_config()
  except ModuleNotFoundError as e:
    if e.name != 'configs.pix2pix':
      raise
  config = default_config.get_config()
  config.method = 'pix2pix'
  config.dataset_mode = 'aligned'
  config.pool_size = 0
  config.model.netG = 'unet_256'
  config.model.norm = 'batch'
  config.model.norm_D = 'batch'
  config.model.use_dropout = True
  config.loss.gan_mode = 'vanilla'
  config.loss.lambda_L1 = 100.0
  config.loss.lambda_identity = 0.0
  return config


@dataclasses.dataclass(frozen=True)
class _Generator:
  """A pix2pix generator as read: its config fields and variables."""

  net_g: str
  ngf: int
  norm: str
  use_dropout: bool
  input_channels: int
  output_channels: int
  params: Any
  batch_stats: Any


def _read_pix2pix_generator(path: str, use_dropout: bool) -> _Generator:
  """A U-Net (`torch_weights.unet_from_state_dict`) or, failing the U-Net's keys, a
  ResNet generator (instance norm, no dropout: the only one this project builds)."""
  state_dict = torch_weights.read_state_dict(path)
  try:
    if torch_weights.is_unet_state_dict(state_dict):
      spec, params, stats = torch_weights.unet_from_state_dict(state_dict)
      if spec.net_g is None:
        raise torch_weights.WeightsFileError(
          f'a U-Net with {spec.num_downs} downsamplings has no netG name (only '
          f'{net_spec.UNET_DOWNS}); build nets.unet.UnetGenerator to run it directly'
        )
      return _Generator(
        spec.net_g,
        spec.ngf,
        spec.norm,
        use_dropout,
        spec.input_channels,
        spec.output_channels,
        params,
        stats,
      )
    spec, params = torch_weights.generator_from_state_dict(state_dict)
  except torch_weights.WeightsFileError as e:
    raise torch_weights.WeightsFileError(f'{os.fspath(path)}: {e}') from None
  net_g = net_spec.net_g_name(spec.num_blocks)
  if net_g is None:
    raise torch_weights.WeightsFileError(
      f'{path}: a generator with {spec.num_blocks} residual blocks has no netG name'
    )
  if use_dropout:
    logging.info('%s: a ResNet generator without dropout layers; use_dropout=False', path)
  return _Generator(
    net_g,
    spec.ngf,
    'instance',
    False,
    spec.input_channels,
    spec.output_channels,
    params,
    {},
  )


def convert_pix2pix(
  workdir: str,
  *,
  g: str | None,
  d: str | None = None,
  direction: str = 'AtoB',
  use_dropout: bool = True,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
  """Reads an official pix2pix generator (and critic) and writes checkpoint step 0.

  Args:
    workdir: output directory; must not hold a checkpoint yet.
    g: the generator file (`latest_net_G.pth`), stored as G.
    d: the conditional critic file (`latest_net_D.pth`), stored as D.
    direction: 'AtoB' or 'BtoA', as the model was trained: G reads the first domain.
    use_dropout: whether the U-Net was trained with dropout (its file cannot tell).

  Returns:
    (params, batch_stats, config) as written; batch_stats holds only the networks
    with batch norm ({} if none: then the checkpoint has no `batch_stats` item).

  Raises:
    torch_weights.WeightsFileError: a file is unsafe, damaged, not a pix2pix network,
      or the critic does not fit the generator.
  """
  if not g:
    raise torch_weights.WeightsFileError(
      '--d needs --g: a pix2pix checkpoint holds its generator (latest_net_G.pth)'
    )
  if direction not in ('AtoB', 'BtoA'):
    raise torch_weights.WeightsFileError(
      f"--direction must be 'AtoB' or 'BtoA', got {direction!r}"
    )
  gen = _read_pix2pix_generator(g, use_dropout)
  logging.info('G <- %s: %s', g, gen.net_g)
  params = {'G': gen.params}
  stats = {'G': gen.batch_stats}
  critic = None
  if d:
    critic, params['D'], stats['D'] = torch_weights.read_critic(d)
    logging.info('D <- %s: %s', d, critic)
    pair = gen.input_channels + gen.output_channels
    if critic.input_channels != pair:
      raise torch_weights.WeightsFileError(
        f'{d}: the critic reads {critic.input_channels} channels, but a pix2pix '
        f"critic reads the pair (input, output) of the generator's "
        f'{gen.input_channels} + {gen.output_channels} = {pair}'
      )
  source, target = ('A', 'B') if direction == 'AtoB' else ('B', 'A')
  channels = {source: gen.input_channels, target: gen.output_channels}
  for domain, value in channels.items():
    if value not in (1, 3):
      raise torch_weights.WeightsFileError(
        f'{g}: domain {domain} has {value} channels; the checkpoint config describes '
        '1- or 3-channel domains only'
      )

  config = pix2pix_config()
  config.method = 'pix2pix'
  config.direction = direction
  model = config.model
  model.netG, model.ngf, model.norm = gen.net_g, gen.ngf, gen.norm
  model.use_dropout = gen.use_dropout
  model.input_nc, model.output_nc = channels['A'], channels['B']
  # The official --norm is one flag for both networks.
  model.norm_D = critic.norm if critic else gen.norm
  if critic:
    model.netD, model.ndf = critic.net_d, critic.ndf
    if critic.net_d != 'pixel':
      model.n_layers_D = critic.num_layers
  config_dict = config.to_dict()
  batch_stats = {name: tree for name, tree in stats.items() if tree}
  _write(workdir, params, config_dict, batch_stats)
  return params, batch_stats, config_dict


def cut_config() -> ml_collections.ConfigDict:
  """`configs/cut.py`'s defaults (the official `--model cut`)."""
  return importlib.import_module('configs.cut').get_config()


def convert_cut(
  workdir: str, *, g: str, direction: str = 'AtoB'
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Reads an official CUT / FastCUT generator and writes checkpoint step 0.

  Args:
    workdir: output directory; must not hold a checkpoint yet.
    g: the generator file (`latest_net_G.pth`), stored as G.
    direction: 'AtoB' or 'BtoA', as the model was trained: G reads the first domain.

  Returns:
    (params, config) as written.

  Raises:
    torch_weights.WeightsFileError: a file is unsafe, damaged or not a CUT generator.
  """
  if direction not in ('AtoB', 'BtoA'):
    raise torch_weights.WeightsFileError(
      f"--direction must be 'AtoB' or 'BtoA', got {direction!r}"
    )
  state_dict = torch_weights.read_state_dict(g)
  try:
    if torch_weights.is_antialiased_state_dict(state_dict):
      spec, params = torch_weights.antialiased_generator_from_state_dict(state_dict)
    else:
      spec, params = torch_weights.generator_from_state_dict(state_dict)
  except torch_weights.WeightsFileError as e:
    raise torch_weights.WeightsFileError(f'{os.fspath(g)}: {e}') from None
  net_g = net_spec.net_g_name(spec.num_blocks)
  if net_g is None:
    raise torch_weights.WeightsFileError(
      f'{g}: a generator with {spec.num_blocks} residual blocks has no netG name'
    )
  config = cut_config()
  config.direction = direction
  source, target = ('A', 'B') if direction == 'AtoB' else ('B', 'A')
  channels = {source: spec.input_channels, target: spec.output_channels}
  for domain, value in channels.items():
    if value not in (1, 3):
      raise torch_weights.WeightsFileError(
        f'{g}: domain {domain} has {value} channels; the checkpoint config describes '
        '1- or 3-channel domains only'
      )
  model = config.model
  model.netG, model.ngf = net_g, spec.ngf
  model.upsample, model.downsample = spec.upsample, spec.downsample
  model.input_nc, model.output_nc = channels['A'], channels['B']
  config_dict = config.to_dict()
  _write(workdir, {'G': params}, config_dict)
  return {'G': params}, config_dict


def main(argv: Sequence[str]) -> app.Outcome:
  app.no_arguments(argv)
  f = flags.FLAGS
  if f.cut:
    if f.g or f.d or f.g_AtoB or f.g_BtoA or f.d_A or f.d_B:
      raise torch_weights.WeightsFileError(
        'give --cut alone (a CUT checkpoint holds one generator), not with the '
        'CycleGAN or pix2pix files'
      )
    params, config = convert_cut(f.workdir, g=f.cut, direction=f.direction)
  else:
    params, config = convert(
      f.workdir,
      g_AtoB=f.g_AtoB,
      g_BtoA=f.g_BtoA,
      d_A=f.d_A,
      d_B=f.d_B,
      g=f.g,
      d=f.d,
      direction=f.direction,
      use_dropout=f.use_dropout,
    )
  where = f'{checkpoints.checkpoint_dir(f.workdir)}/0'
  model = config['model']
  fields = ['netG', 'ngf', 'netD', 'ndf', 'input_nc', 'output_nc']
  described = f'netG={model["netG"]}, ngf={model["ngf"]}'
  if config.get('method') == 'cut':
    fields = ['netG', 'ngf', 'upsample', 'downsample', 'input_nc', 'output_nc']
    described += f', upsample={model["upsample"]}, downsample={model["downsample"]}'
  if config.get('method') == 'pix2pix':
    fields += ['norm', 'use_dropout', 'norm_D']
    described += (
      f', norm={model["norm"]}, dropout={model["use_dropout"]}, '
      f'direction={config["direction"]}'
    )
  return app.Outcome(
    f'Wrote {sorted(params)} ({described}) to {where}',
    {
      'command': 'convert',
      'workdir': f.workdir,
      'checkpoint': where,
      'method': config.get('method', 'cycle_gan'),
      'networks': sorted(params),
      'model': {k: model[k] for k in fields},
    },
  )


def cli() -> None:
  """`cyclegan-jax-convert` and `python -m cyclegan_jax.deploy.convert`."""
  app.run(main, prog='convert', define_flags=define_flags)


if __name__ == '__main__':
  cli()
