"""The no-download demo (configs/demo.py) with the improved recipe's switches on.

  python -m cyclegan_jax.main --config=configs/demo_improved.py --workdir=/tmp/demo_imp

`configs/improved.py`'s switches at the demo's size: its 1500 steps are too short for a
1000-step weight average, so the average spans ~100 steps and starts at step 100. The
measured comparison with configs/demo.py is in docs/improved.md.
"""

from configs import demo
from configs import improved


def get_config():
  """Returns the demo config with the recipe's switches on."""
  config = improved.switch_on(demo.get_config())
  config.ema.decay = 0.99
  config.ema.start_step = 100
  return config
