"""The CycleGAN paper's BiGAN/ALI baseline, with CycleGAN's settings.

  python -m cyclegan_jax.main --config=configs/bigan.py --workdir=/tmp/bigan_maps

G: A → B and F: B → A against one critic on joint pairs: (F(y), y) real, (x, G(x))
fake, the PatchGAN reading both images on channels. CycleGAN's networks and schedule
(configs/simgan.py lists them); no cycle or identity term.
"""

import ml_collections

from configs import simgan


def get_config() -> ml_collections.ConfigDict:
  """The paper's CycleGAN settings with method 'bigan'."""
  return simgan.get_config('bigan')
