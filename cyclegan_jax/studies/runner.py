"""What the study runners (`ablation`, `recipe_study`) share: their command and report.

Both train and evaluate a list of runs in subfolders of --workdir, resume finished and
interrupted runs, and rewrite a Markdown table and a JSON summary in --workdir after
every run. This module holds that common part: the command's main (`study_main`), the
report writer (`write_report`) and the progress over runs (`run_progress`). It imports
no JAX, so config files that import the runners stay cheap.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Sequence

import ml_collections

from cyclegan_jax.cli import app
from cyclegan_jax.cli import console


def repo_config(name: str) -> str:
  """The path of the repository's `configs/NAME`, a runner's default --config."""
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  return os.path.join(root, 'configs', name)


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
  """The command as the user typed it, for the report: `python -m MODULE FLAGS...`."""
  flags_given = (sys.argv if argv is None else argv)[1:]
  return ' '.join([f'python -m {module}', *flags_given])


def write_report(
  workdir: str,
  *,
  markdown_name: str,
  markdown: str,
  json_name: str,
  summary: dict[str, Any],
  base: ml_collections.ConfigDict,
  command: str,
) -> None:
  """Writes WORKDIR/markdown_name and WORKDIR/json_name.

  The JSON starts with what every study records (the command, the dataset, the CPU
  count, the base config), then `summary`.
  """
  with open(os.path.join(workdir, markdown_name), 'w', encoding='utf-8') as f:
    f.write(markdown)
  full = {
    'command': command,
    'dataset': base.dataset,
    'cpu_count': os.cpu_count(),
    'base_config': json.loads(json.dumps(base.to_dict())),
    **summary,
  }
  with open(os.path.join(workdir, json_name), 'w') as f:
    json.dump(full, f, indent=1)


def run_progress(total: int, label: str) -> console.ProgressBar:
  """The progress over a study's runs: one full line per finished run (the runs' own
  training lines come between)."""
  return console.ProgressBar(total, label, unit='runs', whole_lines=True)


def study_main(
  argv: Sequence[str],
  *,
  module: str,
  study: Callable[[str], Sequence[dict[str, Any]]],
  workdir: str,
  report_files: Sequence[str],
) -> app.Outcome:
  """The runners' shared main: loads TensorFlow for tf.data, runs, reports.

  Args:
    argv: the positional arguments (none are taken).
    module: the runner's module, for the command line recorded in its report.
    study: runs the study given that command line; returns one result per run.
    workdir: where the runs and the report go.
    report_files: the report's file names in `workdir`.
  """
  app.no_arguments(argv)
  console.tensorflow_for_data()
  results = study(command_line(module))
  paths = [os.path.join(workdir, name) for name in report_files]
  line = (
    f'{len(results)} runs tabulated in {" and ".join(paths)}.'
    if results
    else f'No finished runs to tabulate in {workdir}.'
  )
  return app.Outcome(
    line,
    {
      'command': module.rsplit('.', 1)[-1],
      'workdir': workdir,
      'report': paths,
      'runs': len(results),
    },
  )
