"""What the command-line tools print: our own progress, warnings, and no library chatter.

Every command starts through `cyclegan_jax.cli.app.run`, which calls `configure` with the
raw command line before TensorFlow loads and `install()` once the flags are parsed.
Nothing happens at import. At the default verbosity INFO records are shown only when
they come from this package; warnings and errors from anywhere still show.
`--verbosity=1` shows everything.
"""

from __future__ import annotations

import contextlib
import importlib
import logging as std_logging
import os
import sys
import time
import types
from typing import Iterator, TextIO
import warnings

from absl import logging

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def verbose_argv(argv: list[str]) -> bool:
  """True when the command line asks for --verbosity >= 1 (or -v N >= 1)."""
  for i, arg in enumerate(argv):
    value = None
    if arg.startswith(('--verbosity=', '--v=')):
      value = arg.split('=', 1)[1]
    elif arg in ('--verbosity', '--v', '-v') and i + 1 < len(argv):
      value = argv[i + 1]
    if value is not None:
      try:
        return int(value) >= 1
      except ValueError:
        return False
  return False


# Whether library chatter is hidden; `configure` sets it when a command starts.
_quiet = True


def configure(*, verbose: bool) -> None:
  """Hides TensorFlow's and XLA's C++ chatter unless `verbose`; call before they load.

  Their C++ INFO lines are written before any Python flag is parsed, so the level goes
  into the environment from the raw command line (`verbose_argv`).
  """
  global _quiet
  _quiet = not verbose
  if _quiet:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    # A failed save leaves Orbax's pending writes unawaited; Python says so at exit,
    # after the one-line error.
    warnings.filterwarnings(
      'ignore', message='coroutine .* was never awaited', category=RuntimeWarning
    )


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
  """Sends file descriptor 2 (C++ logging included) to /dev/null for a while."""
  sys.stderr.flush()
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


def import_tensorflow() -> types.ModuleType:
  """Imports TensorFlow with its import-time C++ banner hidden (no variable stops it).

  A failing import is retried with stderr open, so its error is seen.
  """
  if not _quiet or 'tensorflow' in sys.modules:
    return importlib.import_module('tensorflow')
  try:
    with _stderr_to_devnull():
      return importlib.import_module('tensorflow')
  except ImportError:
    return importlib.import_module('tensorflow')


def tensorflow_for_data() -> types.ModuleType:
  """TensorFlow for tf.data only: imported quietly, kept off the accelerators JAX uses."""
  tf = import_tensorflow()
  tf.config.set_visible_devices([], 'GPU')
  tf.config.set_visible_devices([], 'TPU')
  return tf


class OwnInfoOnly(std_logging.Filter):
  """Keeps INFO records of this package and WARNING+ of everyone, without tracebacks.

  A library's record keeps its message but loses its traceback (Orbax logs one per
  failed write of a save, which the command reports itself in one line).
  """

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.pathname.startswith(_PACKAGE_DIR):
      return True
    if record.levelno < std_logging.WARNING or _reported_elsewhere(record):
      return False
    record.exc_info, record.exc_text, record.stack_info = None, None, None
    return True


def _reported_elsewhere(record: std_logging.LogRecord) -> bool:
  """Errors the command reports itself, in one line: a failed background save's."""
  in_orbax = f'{os.sep}orbax{os.sep}' in record.pathname
  if in_orbax and record.threadName != 'MainThread':
    return True  # The main thread re-raises it, and the command names it.
  # The same save's abandoned writes, collected at exit.
  return record.name == 'asyncio' and 'never retrieved' in str(record.msg)


def _closed_loop_error(exc_type, exc, tb) -> bool:
  """TensorStore's callbacks into the event loop of a save that Orbax has abandoned."""
  del tb
  return exc_type is RuntimeError and str(exc) == 'Event loop is closed'


def _unraisable_to_debug_log(unraisable) -> None:
  """Exceptions Python ignores (in callbacks, finalizers): debug log only."""
  try:
    logging.debug(
      'Ignored exception in %r: %s: %s',
      unraisable.object,
      unraisable.exc_type.__name__,
      unraisable.exc_value,
    )
  except Exception:  # pylint: disable=broad-except  # Shutting down: nothing to log to.
    pass


def _quiet_excepthook(previous):
  def hook(exc_type, exc, tb):
    if _closed_loop_error(exc_type, exc, tb):
      logging.debug('After a failed save: %s', exc)
      return
    previous(exc_type, exc, tb)

  hook.quiet_closed_loops = True
  return hook


def install() -> None:
  """Filters library INFO chatter out of the console unless --verbosity >= 1."""
  # absl's outer handler hands records straight to its inner one, skipping its own
  # filters, so the filter goes on the inner Python handler.
  handler = logging.get_absl_handler().python_handler
  for existing in list(handler.filters):
    if isinstance(existing, OwnInfoOnly):
      handler.removeFilter(existing)
  if logging.get_verbosity() < logging.DEBUG:
    handler.addFilter(OwnInfoOnly())
    # After a failed asynchronous save, TensorStore reports each pending write's
    # callback into the abandoned event loop, as an unraisable exception or through
    # sys.excepthook: hundreds of tracebacks. Python ignores them anyway.
    if not getattr(sys.excepthook, 'quiet_closed_loops', False):
      sys.excepthook = _quiet_excepthook(sys.excepthook)
    sys.unraisablehook = _unraisable_to_debug_log


class ProgressBar:
  """A progress bar on stderr: label, bar, count / total, rate, ETA.

  Redrawn in place at most twice a second (and at the end), so that piped logs stay
  short. A `total` of None (not known in advance) shows the count without bar or ETA.
  With `whole_lines` every advance writes one full line instead, for slow bars
  whose items log lines of their own (the study runners' trainings).
  """

  def __init__(
    self,
    total: int | None,
    label: str = '',
    *,
    unit: str = 'images',
    enabled: bool = True,
    whole_lines: bool = False,
    stream: TextIO | None = None,
  ):
    self.total, self.label, self.unit, self.enabled = total, label, unit, enabled
    self.whole_lines = whole_lines
    self.done = 0
    self._stream = stream if stream is not None else sys.stderr
    self._start = time.perf_counter()
    self._last_draw = -1.0
    self._drawn = 0  # Length of the line drawn in place, overdrawn with spaces.

  def line(self, now: float) -> str:
    """The bar as text (no line ending), as it stands at time `now`."""
    elapsed = max(now - self._start, 1e-9)
    rate = self.done / elapsed
    prefix = f'{self.label} ' if self.label else ''
    eta = ''
    if self.total is None:
      bar, count = '', f'{self.done}'
    else:
      width = 30
      filled = width * min(self.done, self.total) // max(self.total, 1)
      bar, count = (
        f'[{"#" * filled}{"." * (width - filled)}] ',
        f'{self.done}/{self.total}',
      )
      left = max(self.total - self.done, 0)
      if left and self.done:
        eta = f', ETA {_duration(left / rate)}'
    # Fast bars give items per second; slow ones (a training per run) seconds per item.
    if not self.done:
      speed = ''
    elif rate >= 1:
      speed = f', {rate:.1f} {_short(self.unit)}/s'
    else:
      speed = f', {elapsed / self.done:.1f} s/{_short(self.unit, one=True)}'
    return f'{prefix}{bar}{count} {self.unit}{speed}{eta}'

  def advance(self, n: int = 1) -> None:
    """Counts `n` more items done and redraws when due."""
    self.done += n
    now = time.perf_counter()
    if not self.enabled:
      return
    finished = self.total is not None and self.done >= self.total
    if not self.whole_lines and not finished and now - self._last_draw < 0.5:
      return
    self._last_draw = now
    if self.whole_lines:
      self._stream.write(self.line(now) + '\n')
    else:
      text = self.line(now)
      self._stream.write('\r' + text.ljust(self._drawn))
      self._drawn = len(text)
    self._stream.flush()

  def close(self) -> None:
    """Ends the bar's line (once something was drawn in place)."""
    if self.enabled and not self.whole_lines and self._last_draw >= 0:
      self._stream.write('\n')
      self._stream.flush()


_SHORT_UNITS = {
  'images': ('img', 'img'),
  'runs': ('runs', 'run'),
  'steps': ('steps', 'step'),
}


def _short(unit: str, *, one: bool = False) -> str:
  """'img' for images in rates; other units as they are (singular when `one`)."""
  many, single = _SHORT_UNITS.get(unit, (unit, unit.removesuffix('s')))
  return single if one else many


def _duration(seconds: float) -> str:
  """'1h02m', '3m05s' or '42s'."""
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f'{hours}h{minutes:02d}m'
  return f'{minutes}m{secs:02d}s' if minutes else f'{secs}s'
