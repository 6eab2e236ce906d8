"""One-line endings for the errors a user can cause, shared by every command line.

  with errors.one_line('translate'):
    ...

turns a bad value, a missing or damaged file, an unwritable folder or a diverged run
into `PROG: error: <message>` on stderr and a non-zero exit; the traceback is logged
only at `--verbosity=1` (debug). Ctrl-C outside the training loop (which saves first)
exits with status 130 and one line.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

from absl import logging

# What a user can cause: bad values, missing or damaged files, unwritable folders,
# a diverged run. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, FloatingPointError)


def describe(error: BaseException) -> str:
  """The error as one line; OSErrors as 'what: path' rather than '[Errno n] ...'."""
  if isinstance(error, OSError) and error.strerror:
    where = f': {error.filename}' if error.filename else ''
    return f'{error.strerror}{where}'
  text = ' '.join(str(error).split())
  return text or type(error).__name__


@contextlib.contextmanager
def one_line(prog: str) -> Iterator[None]:
  """Ends user errors (and Ctrl-C) raised inside in one line and a non-zero exit.

  Args:
    prog: the command's name, the message's prefix ('' for a bare 'error: ...').
  """
  try:
    yield
  except USER_ERRORS as e:
    logging.debug('Traceback of the error below:', exc_info=True)
    sys.exit(f'{prog}: error: {describe(e)}' if prog else f'error: {describe(e)}')
  except KeyboardInterrupt:
    logging.debug('Traceback of the interruption:', exc_info=True)
    sys.stderr.write(f'{prog}: interrupted.\n' if prog else 'interrupted.\n')
    sys.exit(130)


def check_writable_folder(path: str, flag: str) -> None:
  """Creates folder `path` and proves it writable, or raises ValueError in one line.

  Args:
    path: a local folder (buckets, `gs://...`, are left to their own errors).
    flag: how the user named it (e.g. '--workdir'), for the message.
  """
  if '://' in path:
    return
  full = os.path.abspath(path)
  if os.path.exists(full) and not os.path.isdir(full):
    raise ValueError(f'{flag} {path} is a file, not a folder; give a folder.')
  parent = full
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ValueError(
      f'{flag} {path} cannot be created: {parent} is a file, not a folder.'
    )
  try:
    os.makedirs(full, exist_ok=True)
    probe = os.path.join(full, f'.write_test_{os.getpid()}')
    with open(probe, 'w', encoding='utf-8') as f:
      f.write('')
    os.remove(probe)
  except OSError as e:
    raise ValueError(f'{flag} {path} is not writable: {describe(e)}.') from None
