"""What each recipe-study row costs per train step, timed in turns so load hits all alike.

  python benchmarks/recipe_cost.py --setting=colour [--rows=paper,resize_conv] \
      [--out=/tmp/recipe_study/colour/step_costs.json]

Builds the jitted train step of every row of `cyclegan_jax.studies.recipe_study` on the study's
base (`configs/study.py:SETTING`), compiles and warms each up, then runs rounds in which
every row takes `--steps` steps in turn (the order rotating each round), so that a
shared machine's changing load is spread over all rows alike. Prints one JSON line per
row (median seconds per step over the rounds, and the ratio to the paper row) and
writes {row: seconds per step} to --out, which `recipe_study --step_costs=FILE` uses to
size its equal-wall-time rows. A one-way row (`cut`, `cut+ema`) is timed as its A→B
model; the study counts it once per direction.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

# train_step's `build` makes a row's state and step; its --steps and --warmup flags
# (steps per row per round; steps before timing) serve here too.
from train_step import build  # noqa: E402  # pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_string('setting', 'colour', 'configs/study.py setting.')
flags.DEFINE_list('rows', None, 'Rows to time (default: all of the study).')
flags.DEFINE_integer('rounds', 7, 'Rounds of turns.')
flags.DEFINE_string('out', None, 'JSON file for {row: seconds per step}.')
FLAGS.set_default('steps', 5)


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top

  from configs import study  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.studies import recipe_study  # pylint: disable=g-import-not-at-top

  base = study.get_config(FLAGS.setting)
  rows = recipe_study.parse_rows(FLAGS.rows)
  steps = {}
  for row in rows:
    config = recipe_study.row_config(base, row, seed=0)
    state, step, batch = build(config, jax.device_count())
    compiled = step.lower(state, batch).compile()
    for _ in range(FLAGS.warmup):
      state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    steps[row] = [compiled, state, batch]

  times = {row: [] for row in rows}
  for r in range(FLAGS.rounds):
    for row in rows[r % len(rows) :] + rows[: r % len(rows)]:
      compiled, state, batch = steps[row]
      start = time.perf_counter()
      for _ in range(FLAGS.steps):
        state, metrics = compiled(state, batch)
      jax.block_until_ready((state, metrics))
      times[row].append((time.perf_counter() - start) / FLAGS.steps)
      steps[row][1] = state

  medians = {row: statistics.median(t) for row, t in times.items()}
  paper = medians.get(recipe_study.PAPER)
  for row in rows:
    print(
      json.dumps(
        {
          'setting': FLAGS.setting,
          'row': row,
          'step_s_median': round(medians[row], 4),
          'step_s_p10_p90': [
            round(x, 4) for x in statistics.quantiles(times[row], n=10)[::8]
          ],
          'vs_paper': round(medians[row] / paper, 3) if paper else None,
        }
      )
    )
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump({row: round(s, 5) for row, s in medians.items()}, f, indent=1)


if __name__ == '__main__':
  app.run(main)
