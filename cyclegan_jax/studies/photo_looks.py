"""A real-photo benchmark with known truth: photos, and the same photos with a "look".

  python -m cyclegan_jax.studies.photo_looks --output=/tmp/photo_looks [--looks=colour,ink] [--paired]
  python -m cyclegan_jax.main --config=configs/demo.py --workdir=/tmp/looks_colour \
      --config.dataset=folder:/tmp/photo_looks/colour

Domain A is plain photo crops; domain B is crops with a deterministic look applied, so
the true translation of every test image is known both ways (testA_gt/ holds look(testA),
testB_gt/ the untouched crop behind testB). Train A and train B are crops at independent
random places (unpaired, as in CycleGAN); the test crops come from photos that are not
in training. The validation splits (valA, valB, valA_gt, valB_gt) come from two more
photos, seen by neither training nor test: settings are chosen on them
(`config.eval.split='val'`), never on the test photos. Each look is its own `folder:`
dataset:

  colour     a fixed cross-process grade (channels mixed, warm shift): colour only,
             invertible.
  tone       a faded-film tone curve: lifted blacks, S-shaped mid-tones, dimmed whites:
             colour only, invertible up to 8-bit rounding.
  bleach     bleach bypass: half desaturated, harder contrast, slightly soft. Held out:
             no recipe was tuned on it.
  texture    a cartoon look: smoothed, posterised to a few levels, dark edges; B→A must
             bring back the detail the look removes (ill-posed; the truth is known).
  painterly  an oil-paint look (Kuwahara filter): fine texture replaced by flat,
             edge-preserving brush patches, colours richer. Local structure changes;
             not invertible (B→A must invent the texture).
  ink        an ink drawing: edges drawn as dark strokes, the tones flattened to three
             ink washes on warm paper, colour gone. Not invertible (B→A is
             colourisation plus texture).

The content change (objects' shape, colour and texture) is `synthetic:shapes`.

The photos are the colour photographs that scikit-image and scikit-learn ship inside
their wheels (`skimage/data`, `sklearn/datasets/images`; read as files, neither package
is imported), so nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from cyclegan_jax.data import image_files

# Photo files of scikit-image's data folder: train crops come from these...
TRAIN_PHOTOS = (
  'astronaut.png',
  'chelsea.png',
  'hubble_deep_field.jpg',
  'ihc.png',
  'motorcycle_left.png',
  'retina.jpg',
)
# ...and test crops from these, which no training crop sees.
TEST_PHOTOS = ('coffee.png', 'rocket.jpg')
# Validation crops come from scikit-learn's two sample photos: unseen photos, as in test.
# (scikit-image's other colour files are a chart, a logo and a stereo twin of a training
# photo.) Crops of unseen parts of the training photos scored a recipe far above what it
# reached on unseen photos, and chose a recipe that did not carry over to test.
VAL_PHOTOS = ('china.jpg', 'flower.jpg')
# Import name → (pip name, the photos' folder inside the package).
_PHOTO_PACKAGES = {
  'skimage': ('scikit-image', ('data',)),
  'sklearn': ('scikit-learn', ('datasets', 'images')),
}
# testB_gt is written last: its folder says the dataset is complete.
SPLITS = (
  'trainA',
  'trainB',
  'valA',
  'valB',
  'valA_gt',
  'valB_gt',
  'testA',
  'testB',
  'testA_gt',
  'testB_gt',
)
# Photos are scaled so that their shorter side is this many crop sizes: a crop then
# holds an object part with its texture, not a whole scene squeezed into a few pixels.
SHORT_SIDE_IN_CROPS = 3

Look = Callable[[np.ndarray], np.ndarray]


# --------------------------------------------------------------------------------------
# Looks: float [H, W, 3] in [0, 1] -> the same, deterministic and pure
# --------------------------------------------------------------------------------------

# Rows sum to 1 (grey stays grey, give or take the warm offset); the matrix is well
# conditioned (condition number 2.6), so B→A is possible.
_GRADE = np.array([[0.55, 0.55, -0.10], [0.10, 0.60, 0.30], [0.35, -0.15, 0.80]])
_GRADE_OFFSET = np.array([0.03, 0.0, -0.03])
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights.


def colour_look(image: np.ndarray) -> np.ndarray:
  """A cross-process grade: channels mixed (reds to orange, greens to teal), warm shift."""
  return np.clip(image @ _GRADE.T + _GRADE_OFFSET, 0.0, 1.0)


def tone_look(image: np.ndarray) -> np.ndarray:
  """Faded film: an S-curve on each channel, blacks lifted to 0.15, whites to 0.85."""
  s_curve = image * image * (3.0 - 2.0 * image)  # Smoothstep: contrast in mid-tones.
  return 0.15 + 0.70 * s_curve


def texture_look(image: np.ndarray) -> np.ndarray:
  """Cartoon: Gaussian-smoothed, posterised to 5 levels, edges drawn dark."""
  smooth = ndimage.gaussian_filter(image, sigma=(1.0, 1.0, 0.0), mode='reflect')
  levels = 4.0
  poster = np.round(smooth * levels) / levels
  luma = smooth @ _LUMA
  edges = np.hypot(ndimage.sobel(luma, 0), ndimage.sobel(luma, 1))
  ink = np.clip((edges - 0.25) * 2.0, 0.0, 1.0)[..., None]
  return np.clip(poster * (1.0 - 0.85 * ink), 0.0, 1.0)


def bleach_look(image: np.ndarray) -> np.ndarray:
  """Bleach bypass: colours half washed towards grey, harder contrast, a slight blur.

  Held out: the recipes were tuned on the other looks, never on this one.
  """
  soft = ndimage.gaussian_filter(image, sigma=(0.7, 0.7, 0.0), mode='reflect')
  grey = (soft @ _LUMA)[..., None]
  washed = grey + 0.45 * (soft - grey)
  return np.clip(0.5 + 1.35 * (washed - 0.5), 0.0, 1.0)


def kuwahara(image: np.ndarray, radius: int) -> np.ndarray:
  """Kuwahara filter: each pixel takes the mean colour of whichever of its four
  (radius+1)² corner windows has the least luma variance (edges stay, texture goes)."""
  k = radius + 1
  padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode='reflect')
  luma = padded @ _LUMA

  def box_means(x: np.ndarray) -> np.ndarray:
    # Mean of every k×k window by its top-left corner, from an integral image.
    c = np.pad(x, ((1, 0), (1, 0)) + ((0, 0),) * (x.ndim - 2)).cumsum(0).cumsum(1)
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)

  mean_l, mean_l2, mean_c = box_means(luma), box_means(luma * luma), box_means(padded)
  var = mean_l2 - mean_l * mean_l
  h, w = image.shape[:2]
  corners = [(dy, dx) for dy in (0, radius) for dx in (0, radius)]
  variances = np.stack([var[dy : dy + h, dx : dx + w] for dy, dx in corners])
  colours = np.stack([mean_c[dy : dy + h, dx : dx + w] for dy, dx in corners])
  best = np.argmin(variances, axis=0)  # Ties take the first corner: deterministic.
  return np.take_along_axis(colours, best[None, ..., None], axis=0)[0]


def painterly_look(image: np.ndarray) -> np.ndarray:
  """Oil paint: a Kuwahara filter (radius 3) twice, then saturation × 1.3.

  Fine texture becomes flat brush patches with crisp edges between them.
  """
  paint = kuwahara(kuwahara(image, 3), 3)
  grey = (paint @ _LUMA)[..., None]
  return np.clip(grey + 1.3 * (paint - grey), 0.0, 1.0)


_PAPER = np.array([0.96, 0.93, 0.85])
_INK = np.array([0.10, 0.09, 0.12])


def ink_look(image: np.ndarray) -> np.ndarray:
  """Ink drawing: dark strokes on edges, tones flattened to three washes on paper.

  Strokes come from a difference of Gaussians of the luma (dark where it falls off an
  edge); the washes quantise the smoothed luma, so shading becomes flat ink tones.
  """
  luma = image @ _LUMA
  fine = ndimage.gaussian_filter(luma, 0.8, mode='reflect')
  coarse = ndimage.gaussian_filter(luma, 2.0, mode='reflect')
  stroke = np.clip((coarse - fine - 0.01) * 20.0, 0.0, 1.0)
  wash = (2.0 - np.clip(np.floor(coarse * 3.0), 0.0, 2.0)) * 0.28  # 0, 0.28 or 0.56.
  ink = np.maximum(stroke, wash)[..., None]
  return np.clip(_PAPER * (1.0 - ink) + _INK * ink, 0.0, 1.0)


LOOKS: dict[str, Look] = {
  'colour': colour_look,
  'tone': tone_look,
  'texture': texture_look,
  'bleach': bleach_look,
  'painterly': painterly_look,
  'ink': ink_look,
}
# The looks that change local structure and texture, not only colour and tone.
STRUCTURAL_LOOKS = ('texture', 'painterly', 'ink')


# --------------------------------------------------------------------------------------
# Photos and crops
# --------------------------------------------------------------------------------------


def photo_dir(package: str = 'skimage') -> str:
  """The folder of `package`'s sample photos, found without importing it.

  Raises:
    FileNotFoundError: the package is not installed.
  """
  pip_name, folder = _PHOTO_PACKAGES[package]
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
      f'The photo benchmark reads the photos {pip_name} ships, but {pip_name} is '
      'not installed: pip install -r requirements.txt.'
    )
  return os.path.join(list(spec.submodule_search_locations)[0], *folder)


def photo_path(name: str) -> str:
  return os.path.join(photo_dir('sklearn' if name in VAL_PHOTOS else 'skimage'), name)


def load_photo(name: str, crop_size: int) -> np.ndarray:
  """Photo `name` as float [H, W, 3] in [0, 1], short side SHORT_SIDE_IN_CROPS crops."""
  with Image.open(photo_path(name)) as im:
    im = im.convert('RGB')
    scale = SHORT_SIDE_IN_CROPS * crop_size / min(im.size)
    size = (round(im.width * scale), round(im.height * scale))
    im = im.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(im, np.float32) / 255.0


def random_crops(
  photos: Sequence[np.ndarray], count: int, size: int, rng: np.random.Generator
) -> list[np.ndarray]:
  """`count` size×size crops, photos taken in turn, places uniform at random."""
  crops = []
  for i in range(count):
    photo = photos[i % len(photos)]
    y = int(rng.integers(0, photo.shape[0] - size + 1))
    x = int(rng.integers(0, photo.shape[1] - size + 1))
    crops.append(photo[y : y + size, x : x + size])
  return crops


def split_photo(photo: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
  """(training part, band): the band is the last `size` px of the long side (the right
  edge of a square photo). The band was the validation split; it stays out of training
  so that the training crops, and every test score made on them, stay as they were."""
  if photo.shape[1] >= photo.shape[0]:
    return photo[:, :-size], photo[:, -size:]
  return photo[:-size], photo[-size:]


def to_uint8(image: np.ndarray) -> np.ndarray:
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def build_splits(
  look: Look,
  *,
  size: int,
  num_train: int,
  num_test: int,
  seed: int,
  num_val: int | None = None,
) -> dict[str, list[np.ndarray]]:
  """The splits of one look's dataset (SPLITS), as uint8 [size, size, 3] images.

  The look is applied to the 8-bit crop, as a user's photo editor would; the ground
  truth of testB (valB) is that 8-bit crop itself. `num_val` defaults to `num_test`.
  """
  train = [split_photo(load_photo(name, size), size)[0] for name in TRAIN_PHOTOS]
  val = [load_photo(name, size) for name in VAL_PHOTOS]
  test = [load_photo(name, size) for name in TEST_PHOTOS]
  # One stream per split: changing one split's count leaves the others' crops alone.
  rngs = [np.random.default_rng([seed, i]) for i in range(6)]
  num_val = num_test if num_val is None else num_val

  def crops(photos, count, rng):
    return [to_uint8(c) for c in random_crops(photos, count, size, rng)]

  def styled(images):
    return [to_uint8(look(im.astype(np.float32) / 255.0)) for im in images]

  test_a = crops(test, num_test, rngs[2])
  test_b_source = crops(test, num_test, rngs[3])
  val_a = crops(val, num_val, rngs[4])
  val_b_source = crops(val, num_val, rngs[5])
  return {
    'trainA': crops(train, num_train, rngs[0]),
    'trainB': styled(crops(train, num_train, rngs[1])),
    'valA': val_a,
    'valB': styled(val_b_source),
    'valA_gt': styled(val_a),
    'valB_gt': val_b_source,
    'testA': test_a,
    'testB': styled(test_b_source),
    'testA_gt': styled(test_a),
    'testB_gt': test_b_source,
  }


def paired_splits(
  look: Look, *, size: int, num_train: int, num_test: int, seed: int
) -> dict[str, list[np.ndarray]]:
  """The paired (pix2pix) version of `build_splits`: B is the look of the same crop.

  trainB[i] = look(trainA[i]) and testB[i] = look(testA[i]), files of equal names, as
  the two-folder aligned layout pairs them. testA is `build_splits`' testA with the same
  seed (and testB its testA_gt), so a CycleGAN trained on the unpaired set and a pix2pix
  trained on this one are scored on the same test pairs.
  """
  unpaired = build_splits(
    look, size=size, num_train=num_train, num_test=num_test, seed=seed
  )
  train_a = unpaired['trainA']
  return {
    'trainA': train_a,
    'trainB': [to_uint8(look(im.astype(np.float32) / 255.0)) for im in train_a],
    'testA': unpaired['testA'],
    'testB': unpaired['testA_gt'],
  }


def write_dataset(
  out_dir: str,
  look_name: str,
  *,
  size: int = 64,
  num_train: int = 400,
  num_test: int = 32,
  seed: int = 0,
  paired: bool = False,
  num_val: int | None = None,
) -> str:
  """Writes OUT/<look>/<split>/NNNN.png for every split; returns OUT/<look>.

  With `paired`, the pairs of `paired_splits` under OUT/<look>_paired instead (for
  `--config.dataset_mode=aligned`; no validation split). `num_val` defaults to
  `num_test`.

  Raises:
    ValueError: an unknown look, or sizes that cannot be cropped.
  """
  if look_name not in LOOKS:
    raise ValueError(f'Unknown look {look_name!r}; valid: {", ".join(LOOKS)}.')
  num_val = num_test if num_val is None else num_val
  if size < 8 or num_train < 1 or num_test < 1 or num_val < 1:
    raise ValueError(
      f'--size must be >= 8 and the image counts >= 1, got size {size}, '
      f'num_train {num_train}, num_test {num_test}, num_val {num_val}.'
    )
  root = os.path.join(out_dir, look_name + ('_paired' if paired else ''))
  counts = dict(size=size, num_train=num_train, num_test=num_test, seed=seed)
  if paired:
    splits = paired_splits(LOOKS[look_name], **counts)
  else:
    splits = build_splits(LOOKS[look_name], num_val=num_val, **counts)
  for split, images in splits.items():
    folder = os.path.join(root, split)
    os.makedirs(folder, exist_ok=True)
    for i, image in enumerate(images):
      Image.fromarray(image).save(os.path.join(folder, f'{i:04d}.png'))
  return root


def load_split(root: str, split: str, crop: int) -> np.ndarray:
  """A written split's images, top-left `crop` px, in [-1, 1] (N, crop, crop, 3).

  Raises:
    FileNotFoundError: the split's folder holds no images.
  """
  folder = os.path.join(root, split)
  paths = image_files.list_images(folder) if os.path.isdir(folder) else []
  if not paths:
    raise FileNotFoundError(f'No images in {folder}.')
  images = [image_files.read_rgb(p)[:crop, :crop] for p in paths]
  return np.stack(images).astype(np.float32) / 127.5 - 1.0


def define_flags() -> None:
  """The command's flags (defined by its entry point only, never at import)."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.cli import flags as cli_flags  # pylint: disable=g-import-not-at-top

  cli_flags.define_output('Folder that gets one dataset folder per look.', kind='folder')
  flags.DEFINE_alias('out', 'output')  # The flag's earlier name.
  flags.DEFINE_list('looks', list(LOOKS), f'Looks to build, from: {", ".join(LOOKS)}.')
  cli_flags.define_size((64, 64), 'Crop side in pixels (N, or N,N: crops are square).')
  flags.DEFINE_integer('num_train', 400, 'Train crops per domain.')
  flags.DEFINE_integer('num_test', 32, 'Test crops per domain.')
  flags.DEFINE_integer(
    'num_val',
    32,
    'Validation crops per domain (from photos neither training nor test sees).',
  )
  flags.DEFINE_integer('seed', 0, 'Seeds the crop places.')
  flags.DEFINE_bool(
    'paired',
    False,
    'Also write <look>_paired: B = look(A) of the same crops, files of equal names '
    '(pix2pix, --config.dataset_mode=aligned); its test pairs are the unpaired '
    "set's testA and testA_gt.",
  )


def main(argv: Sequence[str]):
  """Writes the looks' datasets; one line naming them."""
  from absl import flags  # pylint: disable=g-import-not-at-top

  from cyclegan_jax.cli import app  # pylint: disable=g-import-not-at-top
  from cyclegan_jax.cli import console  # pylint: disable=g-import-not-at-top

  app.no_arguments(argv)
  f = flags.FLAGS
  height, width = f.size
  if height != width:
    raise app.UsageError(f'--size must be square (N or N,N), got {height},{width}.')
  for name in f.looks:
    if name not in LOOKS:
      raise app.UsageError(f'Unknown look {name!r}; valid: {", ".join(LOOKS)}.')
  roots = []
  progress = console.ProgressBar(len(f.looks), 'photo_looks', unit='looks')
  for name in f.looks:
    for paired in (False, True) if f.paired else (False,):
      roots.append(
        write_dataset(
          f.output,
          name,
          size=height,
          num_train=f.num_train,
          num_test=f.num_test,
          num_val=f.num_val,
          seed=f.seed,
          paired=paired,
        )
      )
    progress.advance()
  progress.close()
  return app.Outcome(
    f'Wrote {", ".join(roots)} (use --config.dataset=folder:{roots[0]}, ...).',
    {'command': 'photo_looks', 'output': f.output, 'datasets': roots},
  )


def cli() -> None:
  """`cyclegan-jax-photo-looks` and `python -m cyclegan_jax.studies.photo_looks`."""
  from cyclegan_jax.cli import app  # pylint: disable=g-import-not-at-top

  app.run(main, prog='photo_looks', define_flags=define_flags)


if __name__ == '__main__':
  cli()
