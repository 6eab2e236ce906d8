r"""Translates your own images with a trained or converted generator, at full size.

  python -m cyclegan_jax.deploy.translate --workdir=DIR [--step=N] --input=FILE_OR_FOLDER \
      --output=OUT_DIR --direction=AtoB|BtoA [--batch_size=8] [--overwrite] \
      [--weights=auto|ema|raw] [--tile=SIZE [--overlap=PIXELS]]

DIR is a training workdir (latest checkpoint, or --step) or the output of
`python -m cyclegan_jax.deploy.convert --g_AtoB=latest_net_G.pth --workdir=DIR` (official
weights; a model-zoo file is one A→B generator, so only --direction=AtoB works there).
Every image keeps its size (any H×W) and its file name, written as OUT_DIR/<stem>.png.
Output names never collide: inputs whose stems are equal (ignoring case), such as
x.png and x.jpg, become x_png.png and x_jpg.png, and any name still taken gets _2, _3,
... . Nothing is written over: if an output name exists in OUT_DIR already, translate
stops before translating anything and names it (pass --overwrite to replace such files;
an input file is never replaced, even then). Only the generator of --direction is read
from the checkpoint. Images of one size are translated in batches; unreadable files are
named in the log and skipped. A run that kept a weight average (config.ema.decay > 0)
translates with it unless --weights=raw. Needs no TensorFlow.

--tile=SIZE translates each image over SIZE×SIZE tiles (`cyclegan_jax.deploy.tiling`), with the
same result as untiled: device memory is bounded by the tile, not the image. With
--tile=0 (the default) an image is tiled only when its untiled translation would not fit
in the free memory (a log line says so), at 512 px. --overlap is the pixels neighbouring
tiles share (computed twice, same result; default 0).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import sys
from typing import Any, Callable, Iterator, Sequence

from absl import flags
from absl import logging
from etils import epath
import numpy as np

from cyclegan_jax.cli import app
from cyclegan_jax.cli import console
from cyclegan_jax.cli import errors
from cyclegan_jax.cli import flags as cli_flags
from cyclegan_jax.data import channels as channels_lib
from cyclegan_jax.data import image_files
from cyclegan_jax.deploy import inference
from cyclegan_jax.deploy import tiling
from cyclegan_jax.train import checkpoints


def list_inputs(path: str) -> list[str]:
  """The file itself, or the image files of a folder (not recursive), sorted."""
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise FileNotFoundError(f'--input {path!r} is neither a file nor a folder.')
  names = sorted(f for f in os.listdir(path) if not f.startswith('.'))
  images = image_files.list_images(path)
  if not images:
    raise FileNotFoundError(
      f'No images in {path} (looked for {", ".join(image_files.IMAGE_EXTENSIONS)} files).'
    )
  others = len([f for f in names if os.path.isfile(os.path.join(path, f))]) - len(images)
  if others:
    logging.info('Ignoring %d files in %s without an image extension.', others, path)
  return images


def output_names(paths: Sequence[str]) -> dict[str, str]:
  """path -> '<stem>.png', unique ignoring case (see the module docstring).

  Where stems are equal ignoring case the extension joins the stem ('<stem>_<ext>.png');
  a name still taken gets '_2', '_3', ... .
  """
  stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  lowered = [stem.lower() for stem in stems]
  out: dict[str, str] = {}
  taken: set[str] = set()
  for path, stem in zip(paths, stems):
    if lowered.count(stem.lower()) > 1:
      stem = os.path.basename(path).replace('.', '_')
    name, n = f'{stem}.png', 2
    while name.lower() in taken:
      name, n = f'{stem}_{n}.png', n + 1
    taken.add(name.lower())
    out[path] = name
  return out


def check_outputs(
  paths: Sequence[str], names: dict[str, str], output_dir: str, *, overwrite: bool = False
) -> None:
  """Raises ValueError if an output would replace an input, or an existing file.

  Args:
    paths: the input files.
    names: their output names (`output_names`).
    output_dir: where the outputs go.
    overwrite: allow replacing existing files that are not inputs.
  """
  inputs = {os.path.realpath(p) for p in paths}
  existing = []
  for path in paths:
    target = os.path.join(output_dir, names[path])
    if os.path.realpath(target) in inputs:
      raise ValueError(
        f'The output {target} would replace the input of that name; give '
        'another --output folder.'
      )
    if os.path.lexists(target):
      if os.path.isdir(target):
        raise ValueError(
          f'The output {target} is a folder; give another --output folder.'
        )
      existing.append(target)
  if existing and not overwrite:
    more = f' and {len(existing) - 1} more' if len(existing) > 1 else ''
    raise ValueError(
      f'{existing[0]}{more} already exist(s); translate writes over '
      'nothing: give an empty or new --output folder, or pass --overwrite.'
    )


def _write_new(path: str, image: np.ndarray, overwrite: bool) -> None:
  """Writes a PNG whole (a temporary file renamed into place), never over a file unless
  `overwrite`; an interrupted run leaves no half-written image under an output name."""
  if '://' in path:
    inference.save_png(path, image)
    return
  folder, name = os.path.split(path)
  partial = os.path.join(folder, f'.{name}.{os.getpid()}.partial')
  try:
    with open(partial, 'wb') as f:
      inference.to_pil(image).save(f, format='PNG')
    if not overwrite and os.path.lexists(path):
      raise FileExistsError(
        errno.EEXIST, 'Appeared while translating; not replaced', path
      )
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)


def _check_tiling(
  generator, params, tile: int, overlap: int, stats=None, model_eval: bool = False
) -> bool:
  """Validates --tile/--overlap against the generator; whether it can be tiled at all.

  Raises:
    ValueError: a bad --tile or --overlap (with the nearest valid value), or --tile
      given for a generator the tiled path does not know.
  """
  if tile < 0:
    raise ValueError(f'--tile must be >= 0 (0: untiled unless too large), got {tile}.')
  why = tiling.refusal(generator, stats or {}, model_eval)
  if why and tile:
    raise ValueError(why + '.')
  if why:
    return False
  try:
    plan = tiling.plan_for(generator, params)
  except tiling.UnsupportedLayoutError:
    if tile:
      raise
    return False  # Untiled only, as before tiling existed.
  tiling.check_tile(tile or tiling.AUTO_TILE, overlap, plan)
  return True


def _fits(params, height: int, width: int, batch: int) -> bool:
  """Whether an untiled batch of H×W images is estimated to fit the free memory."""
  need = tiling.untiled_bytes(params, height, width, batch)
  return need <= tiling.HEADROOM * tiling.available_bytes()


def _auto_tile(
  params, paths: Sequence[str], height: int, width: int, can_tile: bool
) -> int:
  """`tiling.AUTO_TILE` if one H×W image would not fit untiled (one log line per image
  of `paths`), else 0."""
  if not can_tile or _fits(params, height, width, 1):
    return 0
  need, free = tiling.untiled_bytes(params, height, width), tiling.available_bytes()
  for path in paths:
    logging.info(
      'Image %s (%d×%d) is tiled at %d px: untiled it would need about %.1f GB, more '
      'than %.0f%% of the %.1f GB free.',
      path,
      width,
      height,
      tiling.AUTO_TILE,
      need / 1e9,
      100 * tiling.HEADROOM,
      free / 1e9,
    )
  return tiling.AUTO_TILE


@dataclasses.dataclass(frozen=True)
class Translator:
  """One direction of a restored checkpoint, set up to translate images.

  `translate_files` makes one per call; a long-lived caller (the browser demo) keeps one
  per direction, so that each image size compiles once.
  """

  direction: str
  generator: Any
  params: Any
  stats: Any
  run: Callable[..., Any]  # `inference.generator_fn`: (params, images, stats) -> fakes.
  can_tile: bool  # Whether the tiled path knows this generator.
  in_channels: int  # Channels of the images it reads.
  tile: int  # --tile: 0 untiled unless an image would not fit.
  overlap: int
  mode: inference.TestMode
  stateful: bool  # Whether the two test modes differ for it (batch norm or dropout).


def make_translator(
  restored: inference.Restored,
  direction: str,
  *,
  tile: int = 0,
  overlap: int = 0,
  mode: inference.TestMode = inference.DEFAULT_MODE,
) -> Translator:
  """The `Translator` of `direction` (see `translate_files` for the arguments).

  Raises:
    ValueError: the method does not translate `direction`, the checkpoint lacks its
      generator, or `tile`/`overlap` do not fit the generator.
  """
  name = restored.method.generator_for(direction)
  if name not in restored.params:
    raise ValueError(inference.missing_generator_message(restored, name, direction))
  params = restored.params[name]
  stats = restored.stats_for(name)
  generator = restored.generator_for(name)
  own = restored.method.translate_fn is not None  # Not a forward pass (CoGAN's).
  if own and tile:
    raise ValueError(
      f'A {restored.method.name} model translates by optimising its latent code per '
      'image, not with a convolutional network, so it cannot be tiled: drop --tile.'
    )
  return Translator(
    direction=direction,
    generator=generator,
    params=params,
    stats=stats,
    run=inference.direction_fn(
      restored.method, restored.modules, direction, mode, restored.config
    ),
    can_tile=not own
    and _check_tiling(generator, params, tile, overlap, stats, mode.model_eval),
    in_channels=channels_lib.domain_channels(restored.model_config)[direction[0]],
    tile=tile,
    overlap=overlap,
    mode=mode,
    stateful=not own and inference.is_stateful(generator, stats),
  )


def model_input(translator: Translator, rgb: np.ndarray) -> np.ndarray:
  """A decoded uint8 RGB image as the generator reads it: its channels, in [-1, 1]."""
  return inference.from_uint8(channels_lib.match8(rgb, translator.in_channels))


def translate_images(
  translator: Translator,
  images: Sequence[np.ndarray],
  labels: Sequence[str],
  batch_size: int = 8,
) -> Iterator[np.ndarray]:
  """Translates images of one size (`model_input`'s), yielding uint8 outputs in order.

  Batches of up to `batch_size`, halved while a batch would not fit the free memory;
  an image that would not fit alone is tiled (one log line per `labels` entry, the
  images' names), as is every image when the translator has a tile.
  """
  height, width = images[0].shape[:2]
  t = translator
  size = inference.bucket_size(len(images), batch_size)
  use_tile = t.tile or _auto_tile(t.params, labels, height, width, t.can_tile)
  while size > 1 and not use_tile and not _fits(t.params, height, width, size):
    size //= 2  # Fewer images per batch before tiling.
  for start in range(0, len(images), size):
    chunk = images[start : start + size]
    if use_tile:
      fakes = [
        tiling.translate_tiled(
          t.generator, t.params, image, tile=use_tile, overlap=t.overlap
        )
        for image in chunk
      ]
    else:
      padded = inference.padded_batch(chunk, inference.bucket_size(len(chunk), size))
      fakes = np.asarray(t.run(t.params, padded, t.stats))
    for fake in fakes[: len(chunk)]:
      yield inference.to_uint8(fake)


def translate_files(
  restored: inference.Restored,
  direction: str,
  paths: Sequence[str],
  output_dir: str,
  *,
  batch_size: int = 8,
  progress: bool = True,
  overwrite: bool = False,
  tile: int = 0,
  overlap: int = 0,
  mode: inference.TestMode = inference.DEFAULT_MODE,
) -> tuple[list[str], list[str]]:
  """Translates image files into `output_dir`, keeping sizes and file stems.

  Args:
    restored: the generators (see `inference.restore`).
    direction: 'AtoB' or 'BtoA' (one of the checkpoint's method's directions).
    paths: image files.
    output_dir: created if needed.
    batch_size: images of one size per batch.
    progress: show a progress bar on stderr.
    overwrite: replace existing files of the output names (never an input).
    tile: translate every image over tiles of this side (`tiling.translate_tiled`);
      0: untiled, unless an image would not fit (then tiled at `tiling.AUTO_TILE`).
    overlap: pixels neighbouring tiles share (any valid value, same result).
    mode: how a generator with batch norm or dropout runs (`inference.TestMode`);
      it is written to `output_dir`/test_mode.txt for such a generator.

  Returns:
    (written output paths, skipped input paths), each in input order.

  Raises:
    ValueError: the method does not translate `direction`, the checkpoint lacks its
      generator, an output would
      replace an input or (without `overwrite`) an existing file, or `tile`/`overlap`
      do not fit the generator.
  """
  translator = make_translator(restored, direction, tile=tile, overlap=overlap, mode=mode)
  luma_logged = False
  inference.makedirs(output_dir)
  names = output_names(paths)
  check_outputs(paths, names, output_dir, overwrite=overwrite)
  if translator.stateful:
    write_test_mode(output_dir, mode, overwrite=overwrite)

  skipped: list[str] = []
  sized: list[tuple[str, tuple[int, int]]] = []
  for path in paths:
    size = image_files.header_size(path)
    if isinstance(size, str):
      logging.warning('Skipping unreadable image %s (%s).', path, size)
      skipped.append(path)
    else:
      sized.append((path, size))

  written: dict[str, str] = {}
  bar = console.ProgressBar(len(sized), enabled=progress)
  try:
    for group in inference.batches_by_shape(sized, lambda item: item[1], batch_size):
      images, kept = [], []
      for path, _ in group:
        try:
          rgb = image_files.read_rgb(path)
          if (
            translator.in_channels == 1
            and not luma_logged
            and not channels_lib.is_gray(rgb)
          ):
            luma_logged = True
            logging.info(
              'The %s generator reads 1-channel images: colour inputs such as %s are '
              'converted to luma (0.299 R + 0.587 G + 0.114 B).',
              direction,
              path,
            )
          images.append(model_input(translator, rgb))
          kept.append(path)
        except Exception as e:  # pylint: disable=broad-except  # Truncated etc.: skip it.
          logging.warning(
            'Skipping unreadable image %s (%s).', path, image_files.describe_error(e)
          )
          skipped.append(path)
      if kept:
        fakes = translate_images(translator, images, kept, batch_size)
        for path, fake in zip(kept, fakes):
          out_path = os.path.join(output_dir, names[path])
          _write_new(out_path, fake, overwrite)
          written[path] = out_path
      bar.advance(len(group))
  finally:
    bar.close()
  order = {p: i for i, p in enumerate(paths)}
  return (
    [written[p] for p in sorted(written, key=order.get)],
    sorted(skipped, key=order.get),
  )


TEST_MODE_FILE = 'test_mode.txt'


def write_test_mode(output_dir: str, mode: inference.TestMode, overwrite: bool) -> None:
  """Records the test mode beside the outputs (one line), as evaluation's JSON does."""
  path = os.path.join(output_dir, TEST_MODE_FILE)
  file = epath.Path(path)
  previous = file.read_text().strip() if file.exists() else None
  if previous is not None and previous != mode.describe() and not overwrite:
    raise ValueError(
      f'{path} says the images there were translated in another test mode '
      f'({previous}); give another --output folder, or pass --overwrite.'
    )
  file.write_text(mode.describe() + '\n')


def run(
  *,
  workdir: str,
  input_path: str,
  output: str,
  direction: str = 'AtoB',
  step: int = -1,
  batch_size: int = 8,
  progress: bool = True,
  overwrite: bool = False,
  weights: str = 'auto',
  tile: int = 0,
  overlap: int = 0,
  model_eval: bool = False,
) -> list[str]:
  """Translates `input_path` into `output`; exits with one line on errors.

  `weights` is `inference.restore`'s: the generators' weight average where the run kept
  one ('auto'), the average ('ema') or the trained weights ('raw').

  Returns:
    The written files.
  """
  with errors.one_line('translate'):
    return translate_command(
      workdir=workdir,
      input_path=input_path,
      output=output,
      direction=direction,
      step=step,
      batch_size=batch_size,
      progress=progress,
      overwrite=overwrite,
      weights=weights,
      tile=tile,
      overlap=overlap,
      model_eval=model_eval,
    ).data['written']


def translate_command(
  *,
  workdir: str,
  input_path: str,
  output: str,
  direction: str = 'AtoB',
  step: int = -1,
  batch_size: int = 8,
  progress: bool = True,
  overwrite: bool = False,
  weights: str = 'auto',
  tile: int = 0,
  overlap: int = 0,
  model_eval: bool = False,
) -> app.Outcome:
  """The command's work (`run`'s arguments); raises user errors for the one handler."""
  if batch_size < 1:
    raise ValueError(f'--batch_size must be >= 1, got {batch_size}.')
  if direction not in inference.DIRECTIONS:
    raise ValueError(f'--direction must be AtoB or BtoA, got {direction!r}.')
  if os.path.isdir(input_path) and (
    os.path.realpath(input_path) == os.path.realpath(output)
  ):
    raise ValueError(
      '--output must differ from the --input folder (outputs would mix with the inputs).'
    )
  paths = list_inputs(input_path)
  # Checked before the checkpoint is read: a bad --output costs nothing.
  cli_flags.check_output(output, 'folder', '--output')
  check_outputs(paths, output_names(paths), output, overwrite=overwrite)
  restored = inference.restore(workdir, step, direction=direction, weights=weights)
  mode = inference.TestMode(model_eval=model_eval)
  name = restored.method.generator_for(direction)
  stateful = (
    restored.method.translate_fn is None
    and name in restored.params
    and inference.is_stateful(restored.generator_for(name), restored.stats_for(name))
  )
  written, skipped = translate_files(
    restored,
    direction,
    paths,
    output,
    batch_size=batch_size,
    progress=progress,
    overwrite=overwrite,
    tile=tile,
    overlap=overlap,
    mode=mode,
  )
  if skipped:
    print(f'Skipped {len(skipped)} unreadable: {", ".join(skipped)}', file=sys.stderr)
  if not written:
    raise ValueError('no input could be read.')
  how = f', {"--eval" if model_eval else "train-mode"} test mode' if stateful else ''
  return app.Outcome(
    f'Wrote {len(written)} images to {output} ({direction}, step {restored.step}, '
    f'{restored.weights} weights{how}).',
    {
      'command': 'translate',
      'output': output,
      'direction': direction,
      'step': restored.step,
      'weights': restored.weights,
      'written': written,
      'skipped': skipped,
      **({'test_mode': mode.describe()} if stateful else {}),
    },
  )


def define_flags() -> None:
  """The command's flags (defined by its entry point only, never at import)."""
  cli_flags.define_workdir('Training workdir or converted weights.')
  cli_flags.define_step()
  flags.DEFINE_string('input', None, 'An image file or a folder of images.')
  cli_flags.define_output('Folder for the translated PNGs.', kind='folder')
  cli_flags.define_direction()
  flags.DEFINE_integer('batch_size', 8, 'Images of one size per batch.')
  cli_flags.define_overwrite(
    'Replace files of the output names that exist in --output already (never an '
    'input file).'
  )
  cli_flags.define_weights(checkpoints.WEIGHTS)
  cli_flags.define_tiling()
  cli_flags.define_model_eval()
  flags.mark_flags_as_required(['input'])


def main(argv: Sequence[str]) -> app.Outcome:
  app.no_arguments(argv)
  f = flags.FLAGS
  return translate_command(
    workdir=f.workdir,
    input_path=f.input,
    output=f.output,
    direction=f.direction,
    step=f.step,
    batch_size=f.batch_size,
    overwrite=f.overwrite,
    weights=f.weights,
    tile=f.tile,
    overlap=f.overlap,
    model_eval=f.eval,
  )


def cli() -> None:
  """`cyclegan-jax-translate` and `python -m cyclegan_jax.deploy.translate`."""
  app.run(main, prog='translate', define_flags=define_flags)


if __name__ == '__main__':
  cli()
