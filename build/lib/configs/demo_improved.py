"""The no-download demo (configs/demo.py) with the improved recipe's switches on.

  python -m cyclegan_jax.main --config=configs/demo_improved.py --workdir=/tmp/demo_imp

The switches of `cyclegan_jax.studies.recipes.IMPROVED`, as the recipe study measures them
(docs/improved.md has the comparison with configs/demo.py).
"""

from configs import demo
from configs import improved


def get_config():
  """Returns the demo config with the recipe's switches on."""
  return improved.switch_on(demo.get_config())
