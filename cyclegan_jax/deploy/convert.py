r"""Converts official PyTorch CycleGAN weights into an Orbax checkpoint of this project.

  python -m cyclegan_jax.deploy.convert --g_AtoB=latest_net_G_A.pth \
      [--g_BtoA=latest_net_G_B.pth] [--d_A=latest_net_D_A.pth --d_B=latest_net_D_B.pth] \
      --workdir=/tmp/horse2zebra_converted

A model-zoo file `latest_net_G.pth` is a single A→B generator: pass it as `--g_AtoB`.
The workdir gets a step-0 checkpoint whose `params` item holds the given networks under
the reference's names (G_A: A→B, G_B: B→A, D_A judges domain B, D_B judges domain A) and
whose `config` item is `configs/default.py` with the model fields read from the weights,
so `checkpoints.restore_params(workdir)` and the evaluation tools rebuild the networks.
The .pth files are read without torch and without running their pickles.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from absl import flags
from absl import logging

from configs import default as default_config
from cyclegan_jax.cli import app
from cyclegan_jax.cli import errors
from cyclegan_jax.cli import flags as cli_flags
from cyclegan_jax.nets import models
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
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Reads the given .pth files and writes them as checkpoint step 0 of `workdir`.

  Args:
    workdir: output directory; must not hold a checkpoint yet.
    g_AtoB: generator A→B file (stored as G_A).
    g_BtoA: generator B→A file (stored as G_B).
    d_A: critic of domain B (stored as D_A).
    d_B: critic of domain A (stored as D_B).

  Returns:
    (params, config) as written.

  Raises:
    torch_weights.WeightsFileError: a file is unsafe, damaged, not the network it should
      be, or the networks do not fit one config.
  """
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
    net_g = models.net_g_name(g.num_blocks)
    if net_g is None:
      raise torch_weights.WeightsFileError(
        f'a generator with {g.num_blocks} residual blocks has no netG name (only '
        f'{models.NET_G_BLOCKS}); use '
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

  errors.check_writable_folder(workdir, '--workdir')
  manager = checkpoints.create_manager(workdir)
  if manager.all_steps():
    manager.close()
    raise torch_weights.WeightsFileError(
      f'{checkpoints.checkpoint_dir(workdir)} already holds checkpoints '
      f'{sorted(manager.all_steps())}; convert into an empty workdir'
    )
  checkpoints.save(manager, 0, params=params, config=config_dict)
  manager.wait_until_finished()
  manager.close()
  return params, config_dict


def main(argv: Sequence[str]) -> app.Outcome:
  app.no_arguments(argv)
  f = flags.FLAGS
  params, config = convert(
    f.workdir, g_AtoB=f.g_AtoB, g_BtoA=f.g_BtoA, d_A=f.d_A, d_B=f.d_B
  )
  where = f'{checkpoints.checkpoint_dir(f.workdir)}/0'
  model = config['model']
  return app.Outcome(
    f'Wrote {sorted(params)} (netG={model["netG"]}, ngf={model["ngf"]}) to {where}',
    {
      'command': 'convert',
      'workdir': f.workdir,
      'checkpoint': where,
      'networks': sorted(params),
      'model': {
        k: model[k] for k in ('netG', 'ngf', 'netD', 'ndf', 'input_nc', 'output_nc')
      },
    },
  )


def cli() -> None:
  """`cyclegan-jax-convert` and `python -m cyclegan_jax.deploy.convert`."""
  app.run(main, prog='convert', define_flags=define_flags)


if __name__ == '__main__':
  cli()
