"""One run per workdir: a lock file with the holder's name and a heartbeat.

  with workdir_lock.hold(workdir, 'training'):
    ...

creates `workdir/.lock` (JSON: host, pid, start time, a random token) atomically (a hard
link of a complete file, which works on NFS too) and refreshes its modification time
every `HEARTBEAT_S` seconds from a daemon thread. A second process that finds the lock
refuses in one line naming the holder. A lock is stale, and is taken over with a
warning, when its holder is on this host and its pid is gone (kill -9), or when its
heartbeat is older than `STALE_AFTER_S` (a crashed host, whose pids cannot be checked
from here). A holder whose lock was taken over (e.g. it was suspended past the timeout)
finds out at its next `check` and stops before writing a checkpoint.

In a multi-process run, process 0 takes the lock for the run and the others follow its
outcome. Buckets (`gs://...`) are not locked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import socket
import threading
import time
from typing import Callable, Iterator
import uuid

from absl import logging

LOCK_NAME = '.lock'
EVAL_LOCK_NAME = '.eval.lock'
HEARTBEAT_S = 20.0
STALE_AFTER_S = 300.0


class WorkdirInUseError(ValueError):
  """Another live process holds the lock (a one-line message naming it)."""


class LockLostError(ValueError):
  """This process's lock was taken over by another process."""


@dataclasses.dataclass(frozen=True)
class Holder:
  """Who holds a lock: written into the lock file as JSON."""

  host: str
  pid: int
  started: float  # Seconds since the epoch.
  token: str  # Tells two holders with the same host and pid apart.
  purpose: str = 'training'

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self))

  @classmethod
  def from_json(cls, text: str) -> Holder:
    fields = json.loads(text)
    return cls(
      host=str(fields['host']),
      pid=int(fields['pid']),
      started=float(fields['started']),
      token=str(fields['token']),
      purpose=str(fields.get('purpose', 'training')),
    )


def this_process(purpose: str, now: float | None = None) -> Holder:
  """A new Holder for this process."""
  return Holder(
    host=socket.gethostname(),
    pid=os.getpid(),
    started=time.time() if now is None else now,
    token=uuid.uuid4().hex,
    purpose=purpose,
  )


def pid_alive(pid: int) -> bool:
  """Whether process `pid` exists on this host (another user's counts as alive)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def is_stale(
  holder: Holder | None,
  heartbeat_age_s: float,
  *,
  host: str,
  alive: Callable[[int], bool] = pid_alive,
  stale_after_s: float = STALE_AFTER_S,
) -> bool:
  """Whether a lock may be taken over.

  Args:
    holder: the lock file's holder; None for a file that cannot be parsed.
    heartbeat_age_s: seconds since the lock file's last heartbeat (its mtime).
    host: this host's name.
    alive: tells whether a pid of this host exists.
    stale_after_s: a heartbeat older than this is a dead holder's, on any host.
  """
  if heartbeat_age_s > stale_after_s:
    return True
  if holder is None:  # Garbled: only its age can tell.
    return False
  return holder.host == host and not alive(holder.pid)


def _when(seconds: float) -> str:
  moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
  return moment.strftime('%Y-%m-%d %H:%M:%S UTC')


def describe(holder: Holder | None, heartbeat_age_s: float) -> str:
  """'a training on host h, pid 12, started 2026-01-02 03:04:05 UTC (heartbeat 3 s ago)'."""
  beat = f'heartbeat {heartbeat_age_s:.0f} s ago'
  if holder is None:
    return f'an unknown process (unreadable lock file; {beat})'
  return (
    f'a{"n" if holder.purpose[0] in "aeiou" else ""} {holder.purpose} on host '
    f'{holder.host}, pid {holder.pid}, started {_when(holder.started)} ({beat})'
  )


def read(path: str) -> tuple[Holder | None, float] | None:
  """(holder or None if garbled, heartbeat age in seconds) of a lock; None if absent."""
  try:
    with open(path, encoding='utf-8') as f:
      text = f.read()
    age = time.time() - os.stat(path).st_mtime
  except FileNotFoundError:
    return None
  try:
    return Holder.from_json(text), max(age, 0.0)
  except (ValueError, KeyError, TypeError):
    return None, max(age, 0.0)


def _create(path: str, holder: Holder) -> bool:
  """Creates the lock with `holder`'s content, atomically; False if one exists."""
  draft = f'{path}.{holder.token}'
  with open(draft, 'w', encoding='utf-8') as f:
    f.write(holder.to_json())
  try:
    os.link(draft, path)  # Atomic and exclusive, also on NFS (unlike O_EXCL on old ones).
  except FileExistsError:
    return False
  finally:
    os.remove(draft)
  return True


def _remove_stale(path: str, stale: Holder | None, token: str) -> None:
  """Moves the stale lock away, unless another process replaced it meanwhile."""
  moved = f'{path}.stale.{token}'
  try:
    os.rename(path, moved)  # Only one taker's rename succeeds.
  except FileNotFoundError:
    return
  found = read(moved)
  if found is not None and stale is not None and found[0] != stale:
    with contextlib.suppress(FileExistsError):
      os.link(moved, path)  # A fresh lock someone took meanwhile: put it back.
  os.remove(moved)


def acquire(
  folder: str,
  purpose: str,
  *,
  name: str = LOCK_NAME,
  stale_after_s: float = STALE_AFTER_S,
  flag: str = '--workdir',
) -> Holder:
  """Takes the lock of `folder` (which must exist) or raises WorkdirInUseError.

  A stale lock is taken over with a logged warning naming its holder.
  """
  path = os.path.join(folder, name)
  me = this_process(purpose)
  for _ in range(5):
    try:
      if _create(path, me):
        return me
    except OSError as e:
      raise ValueError(f'{flag} {folder} cannot be locked: {e.strerror or e}.') from None
    found = read(path)
    if found is None:  # Released meanwhile.
      continue
    holder, age = found
    if not is_stale(holder, age, host=me.host, stale_after_s=stale_after_s):
      raise WorkdirInUseError(
        f'{flag} {folder} is in use by {describe(holder, age)}; wait for it to end, '
        f'stop it, or use another {flag} (if it is dead on another host, its lock '
        f'{path} goes stale {stale_after_s:.0f} s after its last heartbeat).'
      )
    logging.warning(
      'Taking over the lock of %s from %s, which is gone.',
      folder,
      describe(holder, age),
    )
    _remove_stale(path, holder, me.token)
  raise WorkdirInUseError(f'{flag} {folder}: could not take its lock {path}; try again.')


def owner(folder: str, name: str = LOCK_NAME) -> Holder | None:
  """The current holder of `folder`'s lock, or None (absent or garbled)."""
  found = read(os.path.join(folder, name))
  return found[0] if found else None


def release(folder: str, me: Holder, name: str = LOCK_NAME) -> None:
  """Removes the lock if it is still `me`'s."""
  path = os.path.join(folder, name)
  if owner(folder, name) == me:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


class _Heartbeat(threading.Thread):
  """Refreshes the lock's mtime while it is still ours."""

  def __init__(self, path: str, me: Holder, every_s: float):
    super().__init__(name='workdir_lock_heartbeat', daemon=True)
    self._path, self._me, self._every_s = path, me, every_s
    self.stopped = threading.Event()

  def run(self) -> None:
    while not self.stopped.wait(self._every_s):
      try:
        found = read(self._path)
        if found is None or found[0] != self._me:
          return  # Taken over: `check` says so to the loop.
        os.utime(self._path)
      except OSError as e:  # A flaky shared filesystem: try again next time.
        logging.debug('Lock heartbeat of %s failed: %s', self._path, e)


# The locks this process holds: folder -> (holder, lock file name).
_HELD: dict[str, tuple[Holder, str]] = {}


def check(folder: str) -> None:
  """Raises LockLostError if this process held `folder`'s lock and lost it.

  A no-op where this process holds no lock on `folder` (other processes of a run,
  buckets, code that trains without the lock).
  """
  key = os.path.abspath(folder) if '://' not in folder else folder
  if key not in _HELD:
    return
  me, name = _HELD[key]
  found = read(os.path.join(key, name))
  if found is None or found[0] != me:
    now = describe(*found) if found else 'nobody (the lock file was deleted)'
    raise LockLostError(
      f'The lock of {folder} was taken over (it is now held by {now}); stopping '
      'without saving so as not to overwrite its checkpoints.'
    )


def _agree(ok: bool) -> bool:
  """Process 0's outcome, on every process of a multi-process run."""
  import jax  # pylint: disable=g-import-not-at-top

  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  return bool(multihost_utils.broadcast_one_to_all(np.int32(ok)))


@contextlib.contextmanager
def hold(
  folder: str,
  purpose: str = 'training',
  *,
  name: str = LOCK_NAME,
  heartbeat_s: float = HEARTBEAT_S,
  stale_after_s: float = STALE_AFTER_S,
  flag: str = '--workdir',
  missing_ok: bool = False,
) -> Iterator[None]:
  """Holds `folder`'s lock for the duration of the block (process 0 for the run).

  Args:
    folder: the folder to lock; it must exist unless `missing_ok`.
    purpose: what the holder does, named to a second process ('training').
    name: the lock file's name in `folder`.
    heartbeat_s: how often the holder refreshes the lock.
    stale_after_s: a lock whose heartbeat is older is taken over.
    flag: how the user named `folder`, for messages.
    missing_ok: a missing `folder` is not locked (there is nothing in it to protect).

  Raises:
    WorkdirInUseError: another live process holds the lock.
  """
  import jax  # pylint: disable=g-import-not-at-top

  if '://' in folder or (missing_ok and not os.path.isdir(folder)):
    yield
    return
  key = os.path.abspath(folder)
  me, error = None, None
  if jax.process_index() == 0:
    try:
      me = acquire(key, purpose, name=name, stale_after_s=stale_after_s, flag=flag)
    except ValueError as e:
      error = e
  if not _agree(error is None):
    raise error or WorkdirInUseError(
      f'{flag} {folder}: process 0 could not take its lock (its log says why).'
    )
  if me is None:  # Not process 0: process 0 holds it for the run.
    yield
    return
  heartbeat = _Heartbeat(os.path.join(key, name), me, heartbeat_s)
  heartbeat.start()
  _HELD[key] = (me, name)
  try:
    yield
  finally:
    _HELD.pop(key, None)
    heartbeat.stopped.set()
    release(key, me, name)
