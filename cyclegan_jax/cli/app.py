"""How every command runs: absl flags, one error handler, exit codes, the result lines.

  def main(argv) -> app.Outcome: ...

  def cli() -> None:  # The console script; `python -m` calls it too.
    app.run(main, prog='translate', define_flags=define_flags)

Exit codes: 0 done, 1 an error (one line on stderr: `PROG: error: <what to do>`), 2 a
usage error (a bad or missing flag, in one line), 130 interrupted (Ctrl-C). The traceback
behind an error is logged only at --verbosity=1. A command that finishes prints one
human line on stdout and, with --json, its result as one JSON line after it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from typing import Any, Callable, NoReturn, Sequence

from absl import app
from absl import flags
from absl import logging

from cyclegan_jax.cli import config_checks
from cyclegan_jax.cli import console
from cyclegan_jax.cli import errors
from cyclegan_jax.cli import flags as cli_flags

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@dataclasses.dataclass(frozen=True)
class Outcome:
  """What a finished command reports: one line for people, a dict for --json."""

  line: str
  data: dict[str, Any]


UsageError = app.UsageError  # What a command raises for a bad flag value: exit 2.
Main = Callable[[Sequence[str]], Outcome]


def usage_error(prog: str, message: str) -> NoReturn:
  """Exits 2 with `PROG: error: MESSAGE` in one line."""
  text = ' '.join(str(message).split()).rstrip('.')
  end = '' if text.endswith('?') else '.'
  sys.stderr.write(f'{prog}: error: {text}{end} Try --helpfull.\n')
  sys.exit(EXIT_USAGE)


_HELP = ('--help', '-help', '--helpshort', '-helpshort', '-?')
_HELPFULL = ('--helpfull', '-helpfull')


def parse_flags(
  prog: str, argv: Sequence[str], flag_values: flags.FlagValues = flags.FLAGS
) -> list[str]:
  """Parses `argv` into `flag_values`; a bad or missing flag exits 2 in one line.

  --help (--helpshort, -?) and --helpfull print the usage and exit 0.
  """
  for arg in argv[1:]:
    if arg == '--':
      break
    if arg in _HELP or arg in _HELPFULL:
      app.usage(shorthelp=arg in _HELP, writeto_stdout=True, exitcode=EXIT_OK)
  # The config flag refuses an unknown field with a traceback; a removed one is told.
  gone = config_checks.removed_flag(argv[1:])
  if gone is not None:
    usage_error(prog, gone)
  try:
    return flag_values(list(argv))
  except flags.Error as e:
    usage_error(prog, str(e))


def no_arguments(argv: Sequence[str]) -> None:
  """Raises app.UsageError when a command that takes none is given arguments."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')


def finish(
  prog: str,
  main: Main,
  argv: Sequence[str],
  *,
  flag_values: flags.FlagValues = flags.FLAGS,
  stdout=None,
) -> None:
  """Runs a parsed command in the one error handler and prints its result lines.

  Output flags (`cli_flags.define_output`) are checked before `main` does any work.
  """
  stdout = stdout if stdout is not None else sys.stdout
  console.install()
  try:
    with errors.one_line(prog):
      cli_flags.check_outputs(flag_values)
      outcome = main(argv)
  except app.UsageError as e:
    usage_error(prog, str(e))
  print(outcome.line, file=stdout)
  if 'json' in flag_values and flag_values.json:
    print(json.dumps(outcome.data, default=_jsonable), file=stdout)
  stdout.flush()


def _jsonable(value: Any) -> Any:
  """numpy scalars and arrays, tuples and paths as JSON takes them."""
  if hasattr(value, 'tolist'):
    return value.tolist()
  return str(value)


def run(
  main: Main,
  *,
  prog: str,
  define_flags: Callable[[], None],
  argv: Sequence[str] | None = None,
) -> NoReturn:
  """The one way a command runs: absl's app.run with this module's rules.

  Args:
    main: the command: takes the positional arguments (argv[0] first), returns its
      Outcome; raises a user error (ValueError, OSError, ...) to end in one line.
    prog: the command's name in messages ('translate').
    define_flags: defines the command's flags (`cyclegan_jax.cli.flags` for the
      shared ones).
    argv: the command line (default sys.argv).
  """
  argv = list(sys.argv if argv is None else argv)
  console.configure(verbose=console.verbose_argv(argv))
  define_flags()
  cli_flags.define_json()
  try:
    app.run(
      functools.partial(_main, prog, main),
      argv=argv,
      flags_parser=functools.partial(parse_flags, prog),
    )
  except KeyboardInterrupt:  # Before main started (while parsing or importing).
    logging.debug('Traceback of the interruption:', exc_info=True)
    sys.stderr.write(f'{prog}: interrupted.\n')
    sys.exit(EXIT_INTERRUPTED)


def _main(prog: str, main: Main, argv: Sequence[str]) -> int:
  finish(prog, main, argv)
  return EXIT_OK
