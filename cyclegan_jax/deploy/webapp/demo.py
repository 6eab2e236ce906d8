"""The checkpoint the page translates with: loaded once, translated through translate's
own path (`translate.make_translator`, `translate.translate_images`: the same batching,
channels, test mode and tiling), so that the page's output is `translate`'s.

Every error a person can cause on the page is a `DemoError` of one sentence.
"""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from typing import Any

from cyclegan_jax.data import image_files
from cyclegan_jax.deploy import inference
from cyclegan_jax.deploy import translate
from cyclegan_jax.deploy.webapp import examples as examples_lib
from cyclegan_jax.train import checkpoints

ARROWS = {'AtoB': 'A→B', 'BtoA': 'B→A'}


class DemoError(ValueError):
  """What the page shows for a request it cannot serve: one sentence."""


@dataclasses.dataclass(frozen=True)
class Output:
  """One translation: the PNG and what the page says about it."""

  png: bytes
  width: int
  height: int
  seconds: float


@dataclasses.dataclass
class Demo:
  """A restored checkpoint, one translator per direction it holds, and test images."""

  restored: inference.Restored
  translators: dict[str, translate.Translator]
  examples: dict[str, list[examples_lib.Example]]
  lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
  served: int = 0

  @property
  def directions(self) -> list[str]:
    """The directions this checkpoint translates, in the method's order."""
    return list(self.translators)

  @property
  def missing(self) -> list[str]:
    """The method's directions whose generator the checkpoint lacks (zoo files)."""
    return [d for d in self.restored.method.directions if d not in self.translators]

  def describe(self) -> dict[str, Any]:
    """What the page shows about the checkpoint (JSON)."""
    r = self.restored
    mode = next((t.mode for t in self.translators.values() if t.stateful), None)
    return {
      'workdir': inference.display_path(r.workdir),
      'step': r.step,
      'method': r.method.name,
      'weights': r.weights,
      'netG': r.model_config.netG,
      'test_mode': mode.describe() if mode else None,
      'directions': [
        {
          'name': d,
          'label': f'{ARROWS[d]} ({r.method.generator_for(d)})',
          'available': d in self.translators,
        }
        for d in r.method.directions
      ],
      'examples': {
        d: [e.name for e in self.examples.get(d, [])] for d in self.translators
      },
    }

  def example(self, direction: str, index: int) -> examples_lib.Example:
    """Test image `index` of `direction`."""
    found = self.examples.get(direction, [])
    if not 0 <= index < len(found):
      raise DemoError(f'There is no test image {index} for {direction}.')
    return found[index]

  def translator(self, direction: str) -> translate.Translator:
    """The translator of `direction`, or a DemoError saying which ones exist."""
    if direction in self.translators:
      return self.translators[direction]
    have = ' or '.join(ARROWS[d] for d in self.directions)
    if direction in self.restored.method.directions:
      name = self.restored.method.generator_for(direction)
      raise DemoError(
        f'This checkpoint has no {ARROWS[direction]} generator ({name}), so it '
        f'translates {have} only.'
      )
    raise DemoError(
      f'Unknown direction {direction!r}: this checkpoint translates {have}.'
    )

  def translate(self, direction: str, data: bytes, name: str = 'image') -> Output:
    """Translates an image file's bytes at full size; the output as a PNG.

    Raises:
      DemoError: no image, a file that is not a readable image, or a direction the
        checkpoint lacks.
    """
    translator = self.translator(direction)
    if not data:
      raise DemoError('No image: upload one or pick a test image first.')
    try:
      rgb = image_files.read_rgb(io.BytesIO(data))
    except Exception as e:  # pylint: disable=broad-except  # Any undecodable file.
      raise DemoError(
        f'{name} is not an image this app can read ({type(e).__name__}); use a '
        'PNG, JPEG, BMP, WebP, TIFF or GIF file.'
      ) from None
    start = time.perf_counter()
    with self.lock:  # One translation at a time: device memory is sized for one.
      image = translate.model_input(translator, rgb)
      (fake,) = translate.translate_images(translator, [image], [name], batch_size=1)
      self.served += 1
    buffer = io.BytesIO()
    inference.to_pil(fake).save(buffer, format='PNG')
    return Output(
      buffer.getvalue(), fake.shape[1], fake.shape[0], time.perf_counter() - start
    )


def load(
  workdir: str,
  *,
  step: int = -1,
  weights: str = 'auto',
  tile: int = 0,
  overlap: int = 0,
  model_eval: bool = False,
  examples_folder: str | None = None,
) -> Demo:
  """Restores `workdir`'s generators (all it holds) and sets up each direction.

  Raises:
    ValueError: one line, for a missing or damaged checkpoint, bad weights, tile or
      overlap, or an --examples that is not a folder.
  """
  restored = inference.restore(workdir, step, weights=weights)
  mode = inference.TestMode(model_eval=model_eval)
  translators = {
    d: translate.make_translator(restored, d, tile=tile, overlap=overlap, mode=mode)
    for d, (name, _) in restored.method.directions.items()
    if name in restored.params
  }
  if not translators:
    raise ValueError(f'The checkpoint in {workdir} holds no generator to translate with.')
  if examples_folder:
    shared = examples_lib.from_folder(examples_folder)
    found = {d: shared for d in translators}
  else:
    config = saved_config(workdir, restored.step)
    method = restored.method
    domains = {d: method.source_domain(method.generator_for(d)) for d in translators}
    by_domain = {s: examples_lib.for_domain(config, s) for s in set(domains.values())}
    found = {d: by_domain[s] for d, s in domains.items()}
  return Demo(restored, translators, found)


def saved_config(workdir: str, step: int) -> dict[str, Any]:
  """The config saved with checkpoint `step` ({} when it cannot be read)."""
  manager = checkpoints.create_manager(workdir, create=False, partial_params=True)
  try:
    return checkpoints.saved_config(manager, step)
  except Exception:  # pylint: disable=broad-except  # Examples are optional.
    return {}
  finally:
    manager.close()
