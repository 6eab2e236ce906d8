"""The checkpoint layout, on top of Orbax `CheckpointManager`.

A workdir holds `checkpoints/<step>/` with these items:

* `params`: the Flax parameter trees of the method's networks, by the names its module
  in `cyclegan_jax/methods/` gives them. Converted official weights may hold only some
  of them (e.g. only the A→B generator).
* `state`: the replicated rest a resumed run needs (step, optimiser states, ...), each
  under its train-state field name.
* `per_device`: the image pools and random keys, sharded on `data`; they only fit the
  device count that wrote them.
* `config`: the run's config as JSON (with `method`; none: CycleGAN), so evaluation
  rebuilds the same networks.
* `ema` (runs with `config.ema.decay > 0` only): the exponential moving average of the
  generators' parameters, by name, the weights inference uses by default.
* `batch_stats` (networks with batch norm only, e.g. pix2pix's): the running
  statistics, by network name, which inference reads along with `params`.

Evaluation restores `config` and only the networks it needs from `params` (a partial
restore: damage to the other networks' arrays does not stop it), onto the devices it has
now, so a checkpoint written by any number of devices or processes restores on one CPU.
A step that cannot be read raises `DamagedCheckpointError`, naming the steps that can.
"""

from __future__ import annotations

import errno
import os
import re
import time
from typing import Any, Callable, Sequence

from absl import logging
from etils import epath
import jax
import orbax.checkpoint as ocp

PyTree = Any
CHECKPOINT_DIR = 'checkpoints'
PARAMS, EMA = 'params', 'ema'  # The items that hold network weights.
BATCH_STATS = 'batch_stats'  # The batch norms' running statistics, by network.


def checkpoint_dir(workdir: str) -> str:
  """`workdir/checkpoints`; local paths made absolute, `gs://...` kept as they are."""
  if '://' not in workdir:
    workdir = os.path.abspath(workdir)
  return str(epath.Path(workdir) / CHECKPOINT_DIR)


class DamagedCheckpointError(ValueError):
  """A checkpoint step whose files cannot be read (truncated, deleted, garbled)."""

  def __init__(self, message: str, *, step: int, intact: Sequence[int] = ()):
    super().__init__(message)
    self.step = step
    self.intact = list(intact)


def failure_reason(error: BaseException) -> str:
  """The first line of the innermost cause (TensorStore's own words), for one-line logs."""
  seen = []
  while error is not None and error not in seen:
    seen.append(error)
    error = error.__cause__ or error.__context__
  for e in reversed(seen):
    text = str(e).strip()
    if text:
      return text.splitlines()[0][:300]
  return type(seen[0]).__name__


class CheckpointSaveError(ValueError):
  """A save that did not commit (a full disk, a lost permission, a quota)."""


def save_failure_reason(error: BaseException) -> str:
  """Why a save failed, in words: 'No space left on device (writing PATH)'.

  TensorStore reports OS errors as '...: Failed writing: "PATH": ...
  [os_error_code=\'28\']'; other errors keep `failure_reason`'s first line.
  """
  cause, seen = error, []
  while cause is not None and cause not in seen:  # A Python OSError (local writes).
    if isinstance(cause, OSError) and cause.strerror:
      where = f' (writing {cause.filename})' if cause.filename else ''
      return f'{cause.strerror}{where}'
    seen.append(cause)
    cause = cause.__cause__ or cause.__context__
  text = failure_reason(error)
  code = re.search(r"os_error_code='?(\d+)", text)
  if code is None:
    return text
  path = re.findall(r'"([^"]+)"', text)
  where = f' (writing {path[-1].removesuffix(".__lock")})' if path else ''
  return f'{os.strerror(int(code.group(1)))}{where}'


class SaveLog:
  """Says 'Checkpoint N saved.' once Orbax has committed N, and ends the run when not.

  Orbax writes in the background; a save is true only when its step folder has been
  renamed into place. `queue` starts a save (after the previous one is committed),
  `poll` reports a finished one without waiting, `finish` waits. A failed save raises
  CheckpointSaveError naming the cause and the newest checkpoint that is intact.
  """

  def __init__(self, workdir: str, committed: int | None):
    self.workdir = workdir
    self.committed = committed  # The newest step known to be on disk.
    self.pending: int | None = None

  def _failed(self, step: int, error: BaseException) -> CheckpointSaveError:
    intact = (
      f'the newest intact checkpoint is step {self.committed}'
      if self.committed is not None
      else 'no checkpoint was written'
    )
    return CheckpointSaveError(
      f'Saving checkpoint {step} in {checkpoint_dir(self.workdir)} failed: '
      f'{save_failure_reason(error)}; training stopped and {intact}. Free space (or '
      'fix the permission) and run the same command to resume.'
    )

  def queue(self, manager: ocp.CheckpointManager, step: int, save: Callable[[], Any]):
    """Runs `save` (which queues checkpoint `step`) once the previous one is committed."""
    self.finish(manager)
    try:
      save()
    except Exception as e:  # pylint: disable=broad-except  # Any write error.
      raise self._failed(step, e) from e
    self.pending = step

  def poll(self, manager: ocp.CheckpointManager) -> None:
    """Reports the pending save if it has finished (raising if it failed)."""
    if self.pending is not None and not manager.is_saving_in_progress():
      self.finish(manager)

  def finish(self, manager: ocp.CheckpointManager) -> None:
    """Waits for the pending save; logs it, or raises CheckpointSaveError."""
    if self.pending is None:
      return
    step, self.pending = self.pending, None
    try:
      manager.wait_until_finished()
      manager.check_for_errors()
    except Exception as e:  # pylint: disable=broad-except  # Any write error.
      # Orbax reports the first failed item while the other items' writers still run:
      # let them stop before the lock is released, or they write into the next run.
      join_writers(manager)
      raise self._failed(step, e) from e
    self.committed = step
    logging.info('Checkpoint %d saved.', step)


# What a full disk, a quota or a lost permission says, in any library's words.
_WRITE_FAILURES = tuple(
  os.strerror(code)
  for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES)
)


def _chain(error: BaseException | None) -> list[BaseException]:
  seen: list[BaseException] = []
  while error is not None and error not in seen:
    seen.append(error)
    error = error.__cause__ or error.__context__
  return seen


def _intact_steps(workdir: str) -> list[int]:
  root = checkpoint_dir(workdir)
  if '://' in root or not os.path.isdir(root):
    return []
  return sorted(int(n) for n in os.listdir(root) if n.isdigit())


def write_failure(error: BaseException, workdir: str) -> ValueError | None:
  """The one-line error for a run stopped by a failed write, or None for others.

  A failed save raises CheckpointSaveError; a full disk can first fail another write
  (the summaries' event file), or fail it too on the way out: either way the message
  names the cause and the newest checkpoint on disk.
  """
  chain = _chain(error)
  for e in chain:
    if isinstance(e, CheckpointSaveError):
      return e
  for e in chain:
    text = str(e)
    reason = next((r for r in _WRITE_FAILURES if r in text), None)
    if reason:
      steps = _intact_steps(workdir)
      intact = (
        f'the newest intact checkpoint is step {steps[-1]}'
        if steps
        else 'no checkpoint was written'
      )
      path = re.search(re.escape(os.path.abspath(workdir)) + r'[^\s;:\'"]*', text)
      where = f' (writing {path.group(0)})' if path else ''
      return ValueError(
        f'Writing in {workdir} failed: {reason}{where}; training stopped and {intact}. '
        'Free space (or fix the permission) and run the same command to resume.'
      )
  return None


TMP_MARKER = '.orbax-checkpoint-tmp'


def unfinished_folders(workdir: str) -> list[epath.Path]:
  """The temporary folders of saves that have not (or never) finished, by name."""
  root = epath.Path(checkpoint_dir(workdir))
  if not root.is_dir():
    return []
  return [p for p in sorted(root.iterdir()) if TMP_MARKER in p.name and p.is_dir()]


def join_writers(manager: ocp.CheckpointManager, timeout_s: float = 120.0) -> None:
  """Waits for every write of the last save, including those after a failed one.

  Orbax's background thread stops at the first failed write and leaves the others
  running; Orbax has no public call for them, hence the private attributes (absent:
  nothing to wait for).
  """
  checkpointer = getattr(manager, '_checkpointer', None)
  async_manager = getattr(checkpointer, '_async_manager', None)
  deadline = time.monotonic() + timeout_s
  for future in getattr(async_manager, '_commit_futures', None) or ():
    try:
      future.result(timeout=max(0.0, deadline - time.monotonic()))
    except Exception:  # pylint: disable=broad-except  # Already reported once.
      pass


def remove_unfinished(workdir: str) -> list[str]:
  """Deletes the temporary folders of saves that never finished (a kill mid-save).

  Orbax writes `<step>.orbax-checkpoint-tmp*` and renames it into place when complete,
  so such a folder is never a checkpoint. Call it only while holding the workdir's lock.

  Returns:
    The folders removed.
  """
  removed = []
  for path in unfinished_folders(workdir):
    path.rmtree()
    removed.append(str(path))
  return removed


def create_manager(
  workdir: str,
  *,
  keep: int | None = None,
  create: bool = True,
  partial_params: bool = False,
) -> ocp.CheckpointManager:
  """A manager for `workdir/checkpoints` that knows the items' handlers.

  Args:
    workdir: the run's directory.
    keep: checkpoints kept; None or 0 keeps all (never "delete all").
    create: create the directory if missing.
    partial_params: read `params` with the PyTree handler, which can restore a
      sub-tree (one generator) without reading the others' arrays; the files are the
      same as the standard handler's.
  """
  options = ocp.CheckpointManagerOptions(max_to_keep=keep or None, create=create)
  weights_handler = lambda: (
    ocp.PyTreeCheckpointHandler() if partial_params else ocp.StandardCheckpointHandler()
  )
  return ocp.CheckpointManager(
    checkpoint_dir(workdir),
    options=options,
    item_handlers={
      PARAMS: weights_handler(),
      EMA: weights_handler(),
      BATCH_STATS: weights_handler(),
      'state': ocp.StandardCheckpointHandler(),
      'per_device': ocp.StandardCheckpointHandler(),
      'config': ocp.JsonCheckpointHandler(),
    },
  )


def save(
  manager: ocp.CheckpointManager,
  step: int,
  *,
  params: PyTree,
  config: dict[str, Any],
  state: PyTree | None = None,
  per_device: PyTree | None = None,
  ema: PyTree | None = None,
  batch_stats: PyTree | None = None,
  force: bool = False,
) -> bool:
  """Saves one checkpoint (asynchronously; call `manager.wait_until_finished()`).

  Every process must call this with the same global arrays.
  """
  items = {'params': ocp.args.StandardSave(params), 'config': ocp.args.JsonSave(config)}
  if state is not None:
    items['state'] = ocp.args.StandardSave(state)
  if per_device is not None:
    items['per_device'] = ocp.args.StandardSave(per_device)
  if ema is not None:
    items[EMA] = ocp.args.StandardSave(ema)
  if batch_stats is not None:
    items[BATCH_STATS] = ocp.args.StandardSave(batch_stats)
  return manager.save(step, args=ocp.args.Composite(**items), force=force)


def _path_name(entry: Any) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def shapes_by_path(tree: PyTree) -> dict[str, tuple[int, ...]]:
  """{'a/b/c': shape} for every array (or array metadata) leaf of `tree`.

  Names only, so a dataclass and the dict Orbax saves it as compare equal.
  """
  leaves = jax.tree_util.tree_flatten_with_path(
    tree, is_leaf=lambda x: hasattr(x, 'shape') and hasattr(x, 'dtype')
  )[0]
  return {
    '/'.join(_path_name(e) for e in path): tuple(leaf.shape) for path, leaf in leaves
  }


def per_device_shapes(
  manager: ocp.CheckpointManager,
  step: int,
) -> dict[str, tuple[int, ...]] | None:
  """The saved `per_device` item's shapes, or None if the checkpoint has none."""
  metadata = manager.item_metadata(step)
  if 'per_device' not in metadata or metadata['per_device'] is None:
    return None
  return shapes_by_path(metadata['per_device'])


def has_item(manager: ocp.CheckpointManager, step: int, item: str) -> bool:
  """Whether checkpoint `step` holds `item` (e.g. EMA, which older runs lack)."""
  metadata = manager.item_metadata(step)
  return item in metadata and metadata[item] is not None


def restore_train(
  manager: ocp.CheckpointManager,
  step: int,
  *,
  params: PyTree,
  state: PyTree,
  per_device: PyTree | None,
  ema: PyTree | None = None,
  batch_stats: PyTree | None = None,
) -> dict[str, PyTree]:
  """Restores a training checkpoint onto the abstract (shape, dtype, sharding) targets."""
  items = {
    'params': ocp.args.StandardRestore(params),
    'state': ocp.args.StandardRestore(state),
  }
  if per_device is not None:
    items['per_device'] = ocp.args.StandardRestore(per_device)
  if ema is not None:
    items[EMA] = ocp.args.StandardRestore(ema)
  if batch_stats is not None:
    items[BATCH_STATS] = ocp.args.StandardRestore(batch_stats)
  return manager.restore(step, args=ocp.args.Composite(**items))


def resolve_step(manager: ocp.CheckpointManager, workdir: str, step: int | None) -> int:
  """The latest step if `step` is None or negative, else `step` if it exists."""
  steps = manager.all_steps()
  if not steps:
    raise FileNotFoundError(
      f'No checkpoint in {checkpoint_dir(workdir)}. Train first '
      '(python -m cyclegan_jax.main --workdir=...) or convert official weights '
      '(python -m cyclegan_jax.deploy.convert ...).'
    )
  if step is None or step < 0:
    return max(steps)
  if step not in steps:
    raise FileNotFoundError(
      f'No checkpoint for step {step} in {checkpoint_dir(workdir)}; '
      f'available steps: {sorted(steps)}.'
    )
  return step


def _abstract_on(tree: PyTree, sharding: jax.sharding.Sharding) -> PyTree:
  return jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), tree
  )


def saved_config(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
  """The `config` item of a step (the run's config as saved)."""
  return manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))[
    'config'
  ]


def _read_params(
  manager: ocp.CheckpointManager,
  step: int,
  names: Sequence[str] | None,
  sharding: jax.sharding.Sharding,
  item: str = PARAMS,
) -> tuple[PyTree, dict[str, Any]]:
  """Reads `item` (only `names` of it, where given) and `config` of one step."""
  metadata = manager.item_metadata(step)[item]
  tree = metadata.tree if hasattr(metadata, 'tree') else metadata
  wanted = {k: v for k, v in tree.items() if names is None or k in names}
  abstract = _abstract_on(wanted, sharding)
  if not abstract:  # None of the wanted networks is in this checkpoint.
    return {}, saved_config(manager, step)
  restored = manager.restore(
    step,
    args=ocp.args.Composite(
      **{
        item: ocp.args.PyTreeRestore(
          item=abstract,
          restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
          partial_restore=True,
        )
      },
      config=ocp.args.JsonRestore(),
    ),
  )
  return dict(restored[item]), restored['config']


def restore_params(
  workdir: str,
  step: int | None = None,
  *,
  names: Sequence[str] | None = None,
  sharding: jax.sharding.Sharding | None = None,
  step_flag: str = '--step',
  item: str = PARAMS,
) -> tuple[PyTree, dict[str, Any], int]:
  """Restores only what inference needs: some networks' parameters and the config.

  Args:
    workdir: a training workdir or the output of `cyclegan_jax.deploy.convert`.
    step: the step to restore; None or negative for the latest.
    names: the networks to read (e.g. one generator); None for all. Those the checkpoint
      lacks are left out; the others' arrays are not read at all.
    sharding: where to put the arrays; by default on the first local device, whatever
      the device or process count of the run that wrote them.
    step_flag: the flag that picks a step, named in the damaged-checkpoint message.
    item: PARAMS (the trained weights) or EMA (their average; see `weights_item`).

  Returns:
    (params, config_dict, step).

  Raises:
    FileNotFoundError: no checkpoint, or no such step.
    DamagedCheckpointError: the step's files cannot be read; the message names the
      steps whose same networks can.
  """
  manager = create_manager(workdir, create=False, partial_params=True)
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  try:
    step = resolve_step(manager, workdir, step)
    try:
      params, config = _read_params(manager, step, names, sharding, item)
    except Exception as e:  # pylint: disable=broad-except  # Any unreadable file.
      reason = failure_reason(e)
      intact = [
        s
        for s in sorted(manager.all_steps(), reverse=True)
        if s != step and _readable(manager, s, names, sharding, item)
      ]
      what = ', '.join(names) if names else 'the networks'
      hint = (
        f'intact steps (for {what}): {", ".join(map(str, intact))}; pass '
        f'{step_flag}={intact[0]}'
        if intact
        else 'no other step is intact'
      )
      raise DamagedCheckpointError(
        f'Checkpoint step {step} in {checkpoint_dir(workdir)} is damaged and cannot be '
        f'read ({reason}); {hint}.',
        step=step,
        intact=intact,
      ) from None
  finally:
    manager.close()
  return params, config, step


def _readable(
  manager: ocp.CheckpointManager,
  step: int,
  names: Sequence[str] | None,
  sharding: jax.sharding.Sharding,
  item: str = PARAMS,
) -> bool:
  try:
    _read_params(manager, step, names, sharding, item)
  except Exception:  # pylint: disable=broad-except  # Damaged too.
    return False
  return True


def step_has_item(workdir: str, step: int, item: str) -> bool:
  """Whether checkpoint `step` of `workdir` holds `item` (`has_item` by workdir)."""
  manager = create_manager(workdir, create=False, partial_params=True)
  try:
    return has_item(manager, step, item)
  finally:
    manager.close()


WEIGHTS = ('auto', 'ema', 'raw')  # How inference picks the weights (`weights_item`).


def weights_item(workdir: str, step: int | None, weights: str) -> str:
  """The item inference reads: EMA for 'ema', PARAMS for 'raw', 'auto': EMA if saved.

  Raises:
    FileNotFoundError: no checkpoint, or no such step.
    ValueError: `weights` is not one of WEIGHTS, or 'ema' for a run that kept none.
  """
  if weights not in WEIGHTS:
    raise ValueError(f'weights must be one of {", ".join(WEIGHTS)}, got {weights!r}.')
  if weights == 'raw':
    return PARAMS
  manager = create_manager(workdir, create=False, partial_params=True)
  try:
    step = resolve_step(manager, workdir, step)
    saved = has_item(manager, step, EMA)
  finally:
    manager.close()
  if weights == 'ema' and not saved:
    raise ValueError(
      f'Checkpoint step {step} in {checkpoint_dir(workdir)} has no weight average '
      '(trained with ema.decay=0); use the raw weights (weights=raw or auto).'
    )
  return EMA if saved else PARAMS
