"""Where a run's evaluations live: DIR/eval/step_<N> for the test split and
DIR/eval/<split>_step_<N> for another (val), so scoring one never replaces the other.

No JAX or TensorFlow: study and benchmark scripts read finished evaluations cheaply.
"""

from __future__ import annotations

import os

EVAL_DIR = 'eval'  # Under the run's workdir.


def name(step: int, split: str = 'test') -> str:
  """The folder name (under DIR/eval/) of the evaluation of `step` on `split`."""
  return f'step_{step}' if split == 'test' else f'{split}_step_{step}'


def path(workdir: str, step: int, split: str = 'test') -> str:
  """DIR/eval/<name>: the evaluation of `step` on `split`."""
  return os.path.join(workdir, EVAL_DIR, name(step, split))


def scored_steps(workdir: str, split: str = 'test') -> list[int]:
  """The steps evaluated on `split` under `workdir`, in order."""
  root = os.path.join(workdir, EVAL_DIR)
  prefix = name(0, split)[:-1]
  entries = os.listdir(root) if os.path.isdir(root) else []
  return sorted(
    int(d[len(prefix) :])
    for d in entries
    if d.startswith(prefix) and d[len(prefix) :].isdigit()
  )


def latest(workdir: str, split: str = 'test') -> str:
  """The newest evaluation on `split`; FileNotFoundError with what to do if none."""
  steps = scored_steps(workdir, split)
  if not steps:
    raise FileNotFoundError(
      f'No evaluation of the {split} split in {workdir}/eval; score the run first '
      f'(--mode=eval{"" if split == "test" else f" --config.eval.split={split}"}).'
    )
  return path(workdir, steps[-1], split)
