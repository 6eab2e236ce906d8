"""The recipe study's bases: the paper's recipe at CPU size on each benchmark.

  python -m cyclegan_jax.studies.recipe_study --config=configs/study.py:colour \
      --workdir=/tmp/recipe_study/colour
  python -m cyclegan_jax.main --config=configs/study.py:texture --workdir=/tmp/texture

Settings (`:SETTING`, default `colour`):

  shapes   `synthetic:shapes` at the demo's size (32 px crops, batch 4).
  shapes_ranked
           the same with colours drawn 60 / 30 / 10 %: the palettes' pairing is then
           identifiable from unpaired images (it is not in `shapes`).
  colour, tone, bleach, texture, painterly, ink
           the real-photo benchmark (`cyclegan_jax.studies.photo_looks`): 72 px photo
           crops, random 64 px training crops, batch 1, validation crops from two
           photos and test crops from two others, none of them trained on. Its data is
           built on first use under $CYCLEGAN_JAX_DATA_DIR (default
           ~/.cache/cyclegan_jax) in about a second per look.

All use the demo's networks (resnet_6blocks, ngf = ndf = 16) and the same number of
steps, half at the constant rate and half decaying, so that a study of every switch
fits a CPU. The measured tables are in docs/looks.md and docs/colour_transfer.md.
"""

from __future__ import annotations

import os

import ml_collections

from configs import demo
from cyclegan_jax.studies import photo_looks

SYNTHETIC_SETTINGS = ('shapes', 'shapes_ranked')
SETTINGS = (*SYNTHETIC_SETTINGS, *photo_looks.LOOKS)
DEFAULT_SETTING = 'colour'
NUM_TRAIN_STEPS = 600
PHOTO_SIZE = 72  # Test images are evaluated whole; training takes random 64 px crops.


def photo_dataset(look: str) -> str:
  """`folder:` path of one look's dataset, built there if it is not yet."""
  root = os.path.join(
    os.environ.get('CYCLEGAN_JAX_DATA_DIR', os.path.expanduser('~/.cache/cyclegan_jax')),
    # v3: validation from unseen photos (v2's came from bands of the training photos);
    # training and test crops are v2's.
    f'photo_looks_v3_{PHOTO_SIZE}px',
  )
  path = os.path.join(root, look)
  if not os.path.isdir(os.path.join(path, photo_looks.SPLITS[-1])):  # Written last.
    photo_looks.write_dataset(root, look, size=PHOTO_SIZE)
  return f'folder:{path}'


def get_config(setting: str | None = None) -> ml_collections.ConfigDict:
  """The paper's recipe in study setting `setting` (locked).

  Raises:
    ValueError: `setting` is not one of SETTINGS.
  """
  setting = setting or DEFAULT_SETTING
  if setting not in SETTINGS:
    raise ValueError(f'Unknown study setting {setting!r}; valid: {", ".join(SETTINGS)}.')
  config = demo.get_config()
  config.num_train_steps = NUM_TRAIN_STEPS
  config.log_every_steps = 100
  config.sample_every_steps = NUM_TRAIN_STEPS
  config.checkpoint_every_steps = NUM_TRAIN_STEPS
  config.keep_checkpoints = 1
  if setting in SYNTHETIC_SETTINGS:
    config.dataset = f'synthetic:{setting}'
  else:
    config.dataset = photo_dataset(setting)
    config.preprocess = 'crop'
    config.load_size = PHOTO_SIZE
    config.crop_size = 64
    config.batch_size = 1
  return config
