"""Driving the browser demo as a person does: the app in its own process, headless
Chromium (Debian's `chromium` and `chromium-driver`) through Selenium.

  python tests/browser.py WORKDIR OUT.png   # the README's screenshot of the page

Where Chromium, its driver or Selenium is missing the browser tests skip, except in CI
(`CI` set), where they fail: `.ci/run` installs them.
"""

from __future__ import annotations

import base64
import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from typing import Iterator

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = ('chromium', 'chromium-browser')
START_TIMEOUT_S = 300  # Importing JAX and restoring on a loaded 2-core machine.


def _missing(what: str) -> None:
  message = f'{what}; apt-get install chromium chromium-driver (as .ci/run does)'
  if os.environ.get('CI'):
    pytest.fail(f'CI must run the browser tests: {message}.')
  pytest.skip(message)


def _binary(names: tuple[str, ...]) -> str | None:
  return next((shutil.which(n) for n in names if shutil.which(n)), None)


@contextlib.contextmanager
def chromium(width: int = 1100, height: int = 800) -> Iterator[object]:
  """A headless Chromium WebDriver; Selenium is told both paths, so it downloads nothing."""
  try:
    from selenium import webdriver  # pylint: disable=g-import-not-at-top
    from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  except ImportError:
    _missing('Selenium is not installed (requirements-dev.txt)')
  browser, driver_path = _binary(CHROMIUM), _binary(('chromedriver',))
  if not browser or not driver_path:
    _missing('Chromium or chromedriver is not installed')
  options = webdriver.ChromeOptions()
  options.binary_location = browser
  for arg in (
    '--headless=new',
    '--no-sandbox',  # CI runs as root.
    '--disable-dev-shm-usage',
    '--disable-gpu',
    f'--window-size={width},{height}',
  ):
    options.add_argument(arg)
  driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
  driver.set_script_timeout(60)
  try:
    yield driver
  finally:
    driver.quit()


class App:
  """`python -m cyclegan_jax.deploy.webapp` on a free port, read until it serves."""

  def __init__(self, *flags: str):
    self.process = subprocess.Popen(
      [sys.executable, '-m', 'cyclegan_jax.deploy.webapp', '--port=0', *flags],
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    self.lines: queue.Queue[str] = queue.Queue()
    self.stderr = ''
    threading.Thread(target=self._read_stdout, daemon=True).start()
    line = self._next_line(START_TIMEOUT_S)
    found = re.search(r' at (http://\S+/) ', line)
    if not found:
      self.stop()
      raise AssertionError(f'the app did not start: {line!r}; stderr: {self.stderr}')
    self.url = found.group(1)
    self.first_line = line

  def _read_stdout(self) -> None:
    for line in self.process.stdout:
      self.lines.put(line)
    self.lines.put('')

  def _next_line(self, timeout: float) -> str:
    try:
      line = self.lines.get(timeout=timeout)
    except queue.Empty:
      line = ''
    if not line:  # Ended: its stderr says why.
      self.process.poll()
    return line

  def stop(self) -> tuple[int, str, str]:
    """SIGTERM, which ends it as Ctrl-C does: (exit code, the rest of stdout, stderr).

    (Ctrl-C's SIGINT would do, but a process started in the background by a
    non-interactive shell, as CI may be, ignores SIGINT.)
    """
    if self.process.poll() is None:
      self.process.send_signal(signal.SIGTERM)
    try:
      code = self.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
      self.process.kill()
      code = self.process.wait()
    rest = []
    while (line := self._next_line(1)) != '':
      rest.append(line)
    self.stderr = self.process.stderr.read()
    return code, ''.join(rest), self.stderr


def wait_ready(driver) -> None:
  """Until the page has read the checkpoint's directions."""
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top

  WebDriverWait(driver, 60).until(
    lambda d: d.execute_script('return document.getElementById("direction").length > 0')
  )


def wait_for_source(driver, name: str) -> None:
  """Until the image Translate would send is `name` (a picked one arrives async)."""
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top

  WebDriverWait(driver, 30).until(
    lambda d: d.execute_script('return source && source.name') == name
  )


def click_translate(driver, timeout: float = 180) -> None:
  """Clicks Translate and waits until the answer (an output or an error) is shown."""
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top

  button = driver.find_element(By.ID, 'translate')
  button.click()
  WebDriverWait(driver, timeout).until(lambda d: button.is_enabled())


def fetch_bytes(driver, url: str) -> bytes:
  """The bytes behind a URL of the page (the download link's blob), read in the page."""
  encoded = driver.execute_async_script(
    """
    const [url, done] = arguments;
    fetch(url).then((r) => r.arrayBuffer()).then((buffer) => {
      let text = '';
      for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
      done(btoa(text));
    });
    """,
    url,
  )
  return base64.b64decode(encoded)


def screenshot(workdir: str, path: str, index: int = 4) -> None:
  """The page after translating test image `index`, saved as a PNG at `path`.

  Another image of that size is translated first, so that the time shown is a
  translation's, not the compilation's.
  """
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import Select  # pylint: disable=g-import-not-at-top
  from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=g-import-not-at-top

  app = App(f'--workdir={workdir}')
  try:
    with chromium(900, 800) as driver:
      driver.get(app.url)
      wait_ready(driver)
      picked = Select(driver.find_element(By.ID, 'example'))
      for option in (index + 1, index):
        picked.select_by_index(option)
        wait_for_source(driver, picked.first_selected_option.text)
        click_translate(driver)
      WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, 'output-size').text)
      driver.save_screenshot(path)
  finally:
    app.stop()


if __name__ == '__main__':
  screenshot(sys.argv[1], sys.argv[2])
