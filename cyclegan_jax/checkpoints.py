"""The checkpoint layout, on top of Orbax `CheckpointManager`.

A workdir holds `checkpoints/<step>/` with these items:

* `params`: `{'G_A', 'G_B', 'D_A', 'D_B'}` Flax parameter trees (reference naming: G_A maps
  A→B and D_A judges domain B; G_B maps B→A and D_B judges domain A). Converted official
  weights may hold only some of them (e.g. only `G_A`).
* `state`: the replicated rest a resumed run needs (step, both optimiser states).
* `per_device`: the image pools and random keys, sharded on `data`; they only fit the
  device count that wrote them.
* `config`: the run's config as JSON, so evaluation rebuilds the same networks.

Evaluation restores `params` and `config` only, onto the devices it has now, so a
checkpoint written by any number of devices or processes restores on one CPU.
"""

from __future__ import annotations

import os
from typing import Any

from etils import epath
import jax
import orbax.checkpoint as ocp

PyTree = Any
CHECKPOINT_DIR = 'checkpoints'


def checkpoint_dir(workdir: str) -> str:
  """`workdir/checkpoints`; local paths made absolute, `gs://...` kept as they are."""
  if '://' not in workdir:
    workdir = os.path.abspath(workdir)
  return str(epath.Path(workdir) / CHECKPOINT_DIR)


def create_manager(workdir: str, *, keep: int | None = None,
                   create: bool = True) -> ocp.CheckpointManager:
  """A manager for `workdir/checkpoints` that knows the three items' handlers."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create)
  return ocp.CheckpointManager(
      checkpoint_dir(workdir), options=options,
      item_handlers={
          'params': ocp.StandardCheckpointHandler(),
          'state': ocp.StandardCheckpointHandler(),
          'per_device': ocp.StandardCheckpointHandler(),
          'config': ocp.JsonCheckpointHandler(),
      })


def save(manager: ocp.CheckpointManager, step: int, *, params: PyTree,
         config: dict[str, Any], state: PyTree | None = None,
         per_device: PyTree | None = None, force: bool = False) -> bool:
  """Saves one checkpoint (asynchronously; call `manager.wait_until_finished()`).

  Every process must call this with the same global arrays.
  """
  items = {'params': ocp.args.StandardSave(params), 'config': ocp.args.JsonSave(config)}
  if state is not None:
    items['state'] = ocp.args.StandardSave(state)
  if per_device is not None:
    items['per_device'] = ocp.args.StandardSave(per_device)
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
      tree, is_leaf=lambda x: hasattr(x, 'shape') and hasattr(x, 'dtype'))[0]
  return {'/'.join(_path_name(e) for e in path): tuple(leaf.shape) for path, leaf in leaves}


def per_device_shapes(manager: ocp.CheckpointManager, step: int,
                      ) -> dict[str, tuple[int, ...]] | None:
  """The saved `per_device` item's shapes, or None if the checkpoint has none."""
  metadata = manager.item_metadata(step)
  if 'per_device' not in metadata or metadata['per_device'] is None:
    return None
  return shapes_by_path(metadata['per_device'])


def restore_train(manager: ocp.CheckpointManager, step: int, *, params: PyTree,
                  state: PyTree, per_device: PyTree | None) -> dict[str, PyTree]:
  """Restores a training checkpoint onto the abstract (shape, dtype, sharding) targets."""
  items = {'params': ocp.args.StandardRestore(params),
           'state': ocp.args.StandardRestore(state)}
  if per_device is not None:
    items['per_device'] = ocp.args.StandardRestore(per_device)
  return manager.restore(step, args=ocp.args.Composite(**items))


def resolve_step(manager: ocp.CheckpointManager, workdir: str, step: int | None) -> int:
  """The latest step if `step` is None or negative, else `step` if it exists."""
  steps = manager.all_steps()
  if not steps:
    raise FileNotFoundError(
        f'No checkpoint in {checkpoint_dir(workdir)}. Train first '
        '(python -m cyclegan_jax.main --workdir=...) or convert official weights '
        '(python -m cyclegan_jax.convert ...).')
  if step is None or step < 0:
    return max(steps)
  if step not in steps:
    raise FileNotFoundError(
        f'No checkpoint for step {step} in {checkpoint_dir(workdir)}; '
        f'available steps: {sorted(steps)}.')
  return step


def _abstract_on(tree: PyTree, sharding: jax.sharding.Sharding) -> PyTree:
  return jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=sharding), tree)


def restore_params(workdir: str, step: int | None = None, *,
                   sharding: jax.sharding.Sharding | None = None,
                   ) -> tuple[PyTree, dict[str, Any], int]:
  """Restores only what inference needs: the networks' parameters and the config.

  Args:
    workdir: a training workdir or the output of `cyclegan_jax.convert`.
    step: the step to restore; None or negative for the latest.
    sharding: where to put the arrays; by default on the first local device, whatever
      the device or process count of the run that wrote them.

  Returns:
    (params, config_dict, step).
  """
  manager = create_manager(workdir, create=False)
  step = resolve_step(manager, workdir, step)
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  metadata = manager.item_metadata(step)
  abstract = _abstract_on(metadata['params'], sharding)
  restored = manager.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(abstract), config=ocp.args.JsonRestore()))
  manager.close()
  return restored['params'], restored['config'], step
