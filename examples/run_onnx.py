r"""Translates an image with an exported ONNX generator: onnxruntime, numpy, Pillow only.

  python -m cyclegan_jax.deploy.export --workdir=DIR --format=onnx --output=g.onnx
  python examples/run_onnx.py --model=g.onnx --input=photo.jpg --output=translated.png

The model takes and returns float32 NHWC RGB images in [-1, 1], any height and width
from 5 px (see docs/export.md); the image keeps its size.
"""

import argparse
import sys

import numpy as np
import onnxruntime
from PIL import Image


def translate(session: onnxruntime.InferenceSession, image: np.ndarray) -> np.ndarray:
  """uint8 [H, W, 3] -> uint8 [H, W, 3]."""
  x = image.astype(np.float32)[None] / 127.5 - 1.0
  (y,) = session.run(None, {session.get_inputs()[0].name: x})
  return np.clip(np.round((y[0] + 1.0) * 127.5), 0, 255).astype(np.uint8)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--model', required=True, help='The exported .onnx file.')
  parser.add_argument('--input', required=True, help='An image file (any PIL format).')
  parser.add_argument('--output', required=True, help='The translated image (.png).')
  args = parser.parse_args()
  try:
    with Image.open(args.input) as im:
      image = np.asarray(im.convert('RGB'))
  except OSError as e:
    sys.exit(f'run_onnx: error: cannot read {args.input}: {e}')
  session = onnxruntime.InferenceSession(args.model, providers=['CPUExecutionProvider'])
  Image.fromarray(translate(session, image)).save(args.output)
  print(f'Wrote {args.output} ({image.shape[1]}x{image.shape[0]}).')


if __name__ == '__main__':
  main()
