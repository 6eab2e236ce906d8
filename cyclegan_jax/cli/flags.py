"""The flags several commands share, defined one way, and the check of output paths.

Each command defines its flags in a `define_flags()` that only its entry point calls
(`cyclegan_jax.cli.app.run`), never at import: commands share flag names, and config
files and tests import their modules. The shared ones mean the same in every command:

  --workdir    a training workdir (or converted weights) to read, or a folder to fill
  --output     what the command writes: a folder, or a path whose folder must exist
  --direction  AtoB (A→B) or BtoA (B→A)
  --step       a checkpoint step (-1: the latest)
  --size       N or H,W (N: N×N)
  --overwrite  replace earlier outputs
  --json       end with one JSON line of the result on stdout

Every output flag is registered with its kind ('folder' or 'path') and checked by
`check_outputs` after parsing and before the command's work: a folder is created and
proved writable, a path's parent folder likewise, so a bad output costs nothing.
"""

from __future__ import annotations

import os
from typing import Literal, Sequence

from absl import flags

from cyclegan_jax.cli import errors

FLAGS = flags.FLAGS
OutputKind = Literal['folder', 'path']
DIRECTIONS = ('AtoB', 'BtoA')  # As inference.DIRECTIONS (not imported: it loads JAX).
# Output flag name -> its kind, filled as commands define their flags.
_OUTPUTS: dict[str, OutputKind] = {}


def _defined(name: str, flag_values: flags.FlagValues) -> bool:
  """Whether `name` is defined already: defining twice (tests) keeps the first."""
  return name in flag_values


def define_workdir(
  help_text: str,
  *,
  required: bool = True,
  output: bool = False,
  flag_values: flags.FlagValues = FLAGS,
) -> None:
  """--workdir: a training workdir or converted weights to read, or a folder to fill.

  With `output` (the folder a command fills: convert, the study runners) it is checked
  by `check_outputs` as an output folder.
  """
  if output:
    _OUTPUTS['workdir'] = 'folder'
  if not _defined('workdir', flag_values):
    flags.DEFINE_string('workdir', None, help_text, flag_values=flag_values)
    if required:
      flags.mark_flag_as_required('workdir', flag_values=flag_values)


def define_output(
  help_text: str,
  *,
  kind: OutputKind,
  name: str = 'output',
  required: bool = True,
  flag_values: flags.FlagValues = FLAGS,
) -> None:
  """An output flag, checked by `check_outputs` before the work.

  Args:
    help_text: the flag's help.
    kind: 'folder' (created and proved writable) or 'path' (a file or folder whose
      parent folder is created and proved writable).
    name: the flag's name (`output` unless the command has its own, e.g. save_stats).
    required: whether the command needs it.
    flag_values: where to define it (the global FLAGS unless testing).
  """
  _OUTPUTS[name] = kind
  if not _defined(name, flag_values):
    flags.DEFINE_string(name, None, help_text, flag_values=flag_values)
    if required:
      flags.mark_flag_as_required(name, flag_values=flag_values)


def define_direction(
  help_text: str = "AtoB: A→B; BtoA: B→A (the checkpoint method's generators).",
  *,
  flag_values: flags.FlagValues = FLAGS,
) -> None:
  """--direction, AtoB or BtoA (default AtoB)."""
  if not _defined('direction', flag_values):
    flags.DEFINE_enum(
      'direction', 'AtoB', list(DIRECTIONS), help_text, flag_values=flag_values
    )


def define_model_eval(
  help_text: str = (
    'Run batch norm with its running statistics and no dropout (the official '
    "test.py's --eval); default: each image's own statistics and seeded dropout, as "
    'its default. Only pix2pix-style generators differ.'
  ),
  *,
  flag_values: flags.FlagValues = FLAGS,
) -> None:
  """--eval, the test mode of generators with batch norm or dropout (default off)."""
  if not _defined('eval', flag_values):
    flags.DEFINE_bool('eval', False, help_text, flag_values=flag_values)


def define_step(
  help_text: str = 'Checkpoint step (-1: the latest).',
  *,
  flag_values: flags.FlagValues = FLAGS,
) -> None:
  """--step, a checkpoint step (-1: the latest)."""
  if not _defined('step', flag_values):
    flags.DEFINE_integer('step', -1, help_text, lower_bound=-1, flag_values=flag_values)


def define_weights(
  choices: Sequence[str], *, flag_values: flags.FlagValues = FLAGS
) -> None:
  """--weights: which of a checkpoint's generator weights to use (`choices`, from
  `checkpoints.WEIGHTS`, whose import this light module avoids)."""
  if not _defined('weights', flag_values):
    flags.DEFINE_enum(
      'weights',
      'auto',
      list(choices),
      'ema: the generator weight average (auto: when the run kept one); raw: the trained.',
      flag_values=flag_values,
    )


def define_tiling(*, flag_values: flags.FlagValues = FLAGS) -> None:
  """--tile and --overlap, exact tiled translation (`tiling.translate_tiled`)."""
  if not _defined('tile', flag_values):
    flags.DEFINE_integer(
      'tile',
      0,
      'Translate over tiles of this many pixels a side (same result, device memory '
      'bounded by the tile); 0: untiled unless an image would not fit.',
      flag_values=flag_values,
    )
  if not _defined('overlap', flag_values):
    flags.DEFINE_integer(
      'overlap',
      0,
      'Pixels neighbouring tiles share (computed twice; same result).',
      flag_values=flag_values,
    )


def define_overwrite(
  help_text: str = 'Replace earlier outputs.', *, flag_values: flags.FlagValues = FLAGS
) -> None:
  """--overwrite (default False)."""
  if not _defined('overwrite', flag_values):
    flags.DEFINE_bool('overwrite', False, help_text, flag_values=flag_values)


class SizeParser(flags.ArgumentParser):
  """Parses 'N' (N×N) or 'H,W' into (H, W), each >= `minimum`."""

  syntactic_help = 'N or H,W'

  def __init__(self, minimum: int = 1):
    self.minimum = minimum

  def parse(self, argument: str | tuple[int, int] | None) -> tuple[int, int] | None:
    if argument is None or isinstance(argument, tuple):
      return argument
    return parse_size(argument, self.minimum)

  def flag_type(self) -> str:
    return 'size'


def parse_size(text: str, minimum: int = 1) -> tuple[int, int] | None:
  """'N' -> (N, N), 'H,W' -> (H, W), '' -> None; raises ValueError otherwise."""
  if not text.strip():
    return None
  try:
    parts = tuple(int(p) for p in text.split(','))
  except ValueError:
    parts = ()
  if len(parts) == 1:
    parts = parts * 2
  if len(parts) != 2 or min(parts) < minimum:
    raise ValueError(f'must be N or H,W with both >= {minimum}, got {text!r}')
  return parts  # type: ignore[return-value]


def define_size(
  default: tuple[int, int] | None,
  help_text: str,
  *,
  minimum: int = 1,
  flag_values: flags.FlagValues = FLAGS,
) -> None:
  """--size: 'N' or 'H,W', read as (H, W) (None: the command's own default)."""
  if not _defined('size', flag_values):
    serializer = flags.ArgumentSerializer()
    flags.DEFINE(
      SizeParser(minimum),
      'size',
      None if default is None else f'{default[0]},{default[1]}',
      help_text,
      flag_values=flag_values,
      serializer=serializer,
    )


def define_json(*, flag_values: flags.FlagValues = FLAGS) -> None:
  """--json: the command's last stdout line is its result as one JSON object."""
  if not _defined('json', flag_values):
    flags.DEFINE_bool(
      'json',
      False,
      'End with one JSON line of the result on stdout (after the human line).',
      flag_values=flag_values,
    )


def check_output(path: str, kind: OutputKind, flag: str) -> None:
  """Creates the folder of an output (itself for 'folder') and proves it writable.

  Raises:
    ValueError: one line naming the flag, when that folder cannot be made or written.
  """
  if '://' in path:  # Buckets report their own errors.
    return
  if kind == 'folder':
    errors.check_writable_folder(path, flag)
    return
  parent = os.path.dirname(os.path.abspath(path))
  errors.check_writable_folder(parent, f"{flag}'s folder")


def check_outputs(flag_values: flags.FlagValues = FLAGS) -> None:
  """`check_output` of every registered output flag given a value."""
  for name, kind in _OUTPUTS.items():
    if name in flag_values and flag_values[name].value:
      check_output(flag_values[name].value, kind, f'--{name}')
