"""What the command-line tools print: our own progress, warnings, and no library chatter.

Every entry point imports this module before TensorFlow or JAX (so the C++ log level is
set before their libraries load) and calls `install()` first thing in its `main`. At the
default verbosity INFO records are shown only when they come from this package;
warnings and errors from anywhere still show. `--verbosity=1` shows everything.
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

from absl import logging

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _verbose_argv(argv: list[str]) -> bool:
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


_VERBOSE = _verbose_argv(sys.argv)
# TensorFlow's and XLA's C++ INFO lines are written before any Python flag is parsed,
# so the level has to be in the environment before those libraries are imported.
if not _VERBOSE:
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


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
  if _VERBOSE or 'tensorflow' in sys.modules:
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
  """A one-line progress bar on stderr: label, bar, count / total, images/s.

  Redrawn at most twice a second (and at the end), so that piped logs stay short.
  """

  def __init__(
    self,
    total: int,
    label: str = '',
    *,
    enabled: bool = True,
    stream: TextIO | None = None,
  ):
    self.total, self.label, self.enabled = total, label, enabled
    self.done = 0
    self._stream = stream if stream is not None else sys.stderr
    self._start = time.perf_counter()
    self._last_draw = -1.0

  def advance(self, n: int = 1) -> None:
    """Counts `n` more items done and redraws when due."""
    self.done += n
    now = time.perf_counter()
    if not self.enabled or (self.done < self.total and now - self._last_draw < 0.5):
      return
    self._last_draw = now
    width = 30
    filled = width * min(self.done, self.total) // max(self.total, 1)
    rate = self.done / max(now - self._start, 1e-9)
    prefix = f'{self.label} ' if self.label else ''
    self._stream.write(
      f'\r{prefix}[{"#" * filled}{"." * (width - filled)}] '
      f'{self.done}/{self.total} images, {rate:.1f} img/s'
    )
    self._stream.flush()

  def close(self) -> None:
    """Ends the bar's line (once something was drawn)."""
    if self.enabled and self._last_draw >= 0:
      self._stream.write('\n')
      self._stream.flush()
