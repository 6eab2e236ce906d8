"""`benchmarks/recipe_cost.py` on the study's base shrunk to the tiny config's sizes.

  python tests/tiny_recipe_cost.py --setting=shapes --rows=paper,no_identity ...

Every flag is recipe_cost's. The script times the rows' train steps at the study's size
(`configs/study.py`, the demo's networks with the production conv forms), which compiles
for minutes on a small CPU; its test only checks how it builds, turns and reports the
rows, which the tiny sizes (`configs/tiny.py`'s `shrink`, with the plain conv layers)
exercise alike.
"""

import os
import runpy
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from configs import study  # noqa: E402  # After the path above.
from configs import tiny  # noqa: E402

_study_config = study.get_config


def _tiny_study_config(setting=None):
  return tiny.shrink(_study_config(setting))


if __name__ == '__main__':
  study.get_config = _tiny_study_config
  script = os.path.join(ROOT, 'benchmarks', 'recipe_cost.py')
  sys.argv[0] = script
  runpy.run_path(script, run_name='__main__')
