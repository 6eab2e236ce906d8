"""The HTTP side of the browser demo, on the standard library alone.

  GET  /                                  the page (page.html)
  GET  /api/info                          the checkpoint, its directions and test images
  GET  /api/example?direction=D&index=I   a test image's bytes
  POST /api/translate?direction=D&name=N  body: an image file -> the translation (PNG)

Errors are JSON `{"error": "<one sentence>"}` with a 4xx status (5xx for a failure of
the app itself, still one sentence: the traceback goes to the debug log only). Bound
to a loopback address, it answers only requests addressed to localhost, so that a web
page elsewhere cannot reach it through DNS rebinding.
"""

from __future__ import annotations

import errno
import http.server
import importlib.resources
import ipaddress
import json
import socket
from typing import Any
import urllib.parse

from absl import logging

from cyclegan_jax.cli import errors
from cyclegan_jax.deploy.webapp import demo as demo_lib

LOCAL_NAMES = ('localhost', '127.0.0.1', '[::1]')


def is_loopback(host: str) -> bool:
  """Whether `host` (a name or an address) is this machine only."""
  if host == 'localhost':
    return True
  try:
    return ipaddress.ip_address(host.strip('[]')).is_loopback
  except ValueError:
    return False


def host_name(header: str) -> str:
  """The name in a Host header: 'localhost:8000' -> 'localhost', '[::1]:80' -> '[::1]'."""
  if header.startswith('['):
    return header.split(']')[0] + ']'
  return header.rsplit(':', 1)[0]


def page() -> bytes:
  """The page, shipped beside this module."""
  return (
    importlib.resources.files('cyclegan_jax.deploy.webapp')
    .joinpath('page.html')
    .read_bytes()
  )


class Handler(http.server.BaseHTTPRequestHandler):
  """One request; the demo and the limits live on the server."""

  server: DemoServer
  protocol_version = 'HTTP/1.1'

  def log_message(self, format: str, *args: Any) -> None:  # pylint: disable=redefined-builtin
    logging.debug('%s %s', self.address_string(), format % args)

  def _send(self, status: int, body: bytes, media_type: str, **headers: str) -> None:
    self.send_response(status)
    self.send_header('Content-Type', media_type)
    self.send_header('Content-Length', str(len(body)))
    self.send_header('Cache-Control', 'no-store')
    self.send_header('X-Content-Type-Options', 'nosniff')
    for key, value in headers.items():
      self.send_header(key.replace('_', '-'), value)
    self.end_headers()
    if self.command != 'HEAD':
      self.wfile.write(body)

  def _json(self, status: int, value: Any) -> None:
    self._send(status, json.dumps(value).encode(), 'application/json')

  def _error(self, status: int, message: str) -> None:
    self._json(status, {'error': message})

  def _query(self) -> tuple[str, dict[str, str]]:
    url = urllib.parse.urlsplit(self.path)
    return url.path, {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}

  def _host_allowed(self) -> bool:
    return not self.server.loopback or (
      host_name(self.headers.get('Host') or '') in LOCAL_NAMES
    )

  def _guarded(self, route) -> None:
    """Runs a route with every failure answered in one sentence."""
    if not self._host_allowed():
      self._error(403, 'This app answers requests addressed to localhost only.')
      return
    try:
      route()
    except ConnectionError:  # The browser went away (a reload): nobody to answer.
      logging.debug('%s %s: the client disconnected.', self.command, self.path)
    except demo_lib.DemoError as e:
      self._error(400, str(e))
    except errors.USER_ERRORS as e:
      self._error(400, errors.describe(e))
    except Exception as e:  # pylint: disable=broad-except  # The page gets one line.
      logging.debug('Traceback of the failed request:', exc_info=True)
      logging.warning('%s %s failed: %s', self.command, self.path, errors.describe(e))
      self._error(500, f'The translation failed: {errors.describe(e)}.')

  def do_GET(self) -> None:  # pylint: disable=invalid-name
    self._guarded(self._get)

  def do_HEAD(self) -> None:  # pylint: disable=invalid-name
    self._guarded(self._get)

  def do_POST(self) -> None:  # pylint: disable=invalid-name
    self._guarded(self._post)

  def _get(self) -> None:
    path, query = self._query()
    demo = self.server.demo
    if path in ('/', '/index.html'):
      self._send(200, page(), 'text/html; charset=utf-8')
    elif path == '/api/info':
      self._json(200, {**demo.describe(), 'max_upload_bytes': self.server.max_bytes})
    elif path == '/api/example':
      try:
        index = int(query.get('index', ''))
      except ValueError:
        raise demo_lib.DemoError('Give the test image as index=N.') from None
      example = demo.example(query.get('direction', ''), index)
      self._send(200, example.data, example.media_type)
    else:
      self._error(404, f'There is nothing at {path}.')

  def _post(self) -> None:
    path, query = self._query()
    if path != '/api/translate':
      self._error(404, f'There is nothing to post to at {path}.')
      return
    length = self.headers.get('Content-Length')
    if length is None or not length.isdigit():
      self.close_connection = True
      self._error(411, 'The request did not say how large the image is.')
      return
    size = int(length)
    if size > self.server.max_bytes:
      self.close_connection = True  # The body is not read.
      self._error(
        413,
        f'The file is {size / 1e6:.1f} MB, more than the {self.server.max_bytes / 1e6:g}'
        ' MB this app accepts (--max_upload_mb).',
      )
      return
    data = self.rfile.read(size)
    name = query.get('name') or 'image'
    output = self.server.demo.translate(query.get('direction', ''), data, name)
    self._send(
      200,
      output.png,
      'image/png',
      X_Image_Size=f'{output.width}x{output.height}',
      X_Seconds=f'{output.seconds:.3f}',
    )


class DemoServer(http.server.ThreadingHTTPServer):
  """A threaded HTTP server holding the demo (translations run one at a time)."""

  daemon_threads = True

  def __init__(self, demo: demo_lib.Demo, host: str, port: int, max_bytes: int) -> None:
    self.demo = demo
    self.max_bytes = max_bytes
    self.loopback = is_loopback(host)
    if ':' in host:
      self.address_family = socket.AF_INET6
    super().__init__((host.strip('[]'), port), Handler)

  @property
  def url(self) -> str:
    """Where a browser on this machine (or, bound elsewhere, another) finds the page."""
    host, port = self.server_address[:2]
    shown = f'[{host}]' if ':' in str(host) else host
    return f'http://{shown}:{port}/'


def make_server(
  demo: demo_lib.Demo,
  host: str = '127.0.0.1',
  port: int = 8000,
  max_bytes: int = 64_000_000,
) -> DemoServer:
  """The server, bound and listening (port 0: a free one; see `.url`).

  Raises:
    ValueError: one line, when the address cannot be bound (in use, not this host's).
  """
  try:
    return DemoServer(demo, host, port, max_bytes)
  except OSError as e:
    hint = (
      'pass another --port (0: any free one)'
      if e.errno == errno.EADDRINUSE
      else 'pass --host=127.0.0.1 or an address of this machine'
    )
    raise ValueError(
      f'Cannot listen on {host}:{port} ({errors.describe(e)}); {hint}.'
    ) from None
