"""The browser demo in a real browser: headless Chromium uploads, picks, clicks and reads
back the output, which must be `translate`'s for the same file; and the errors a person
can meet, each shown on the page in one sentence."""

import io
import os
import urllib.request

import numpy as np
from PIL import Image
import pytest

from cyclegan_jax.deploy import convert
from cyclegan_jax.deploy import translate
from tests import browser

pytestmark = pytest.mark.slow  # A browser and an app process: tens of seconds.
DATA = os.path.join(os.path.dirname(__file__), 'data')


def by_id(driver, element_id):
  from selenium.webdriver.common.by import By  # pylint: disable=g-import-not-at-top

  return driver.find_element(By.ID, element_id)


def select(driver, element_id):
  from selenium.webdriver.support.ui import Select  # pylint: disable=g-import-not-at-top

  return Select(by_id(driver, element_id))


def translated(workdir, source, direction, tmp_path):
  """What `translate` writes for `source`, as ints."""
  out = str(tmp_path / f'cli_{direction}_{os.path.basename(source)}')
  (written,) = translate.run(
    workdir=workdir, input_path=source, output=out, direction=direction, progress=False
  )
  return np.asarray(Image.open(written)).astype(int)


def page_output(driver):
  """The image the download link gives, as ints, and the link's file name."""
  link = by_id(driver, 'download')
  data = browser.fetch_bytes(driver, link.get_attribute('href'))
  return np.asarray(Image.open(io.BytesIO(data))).astype(int), link.get_attribute(
    'download'
  )


@pytest.fixture(scope='module')
def driver():
  with browser.chromium() as d:
    yield d


def stop_cleanly(app):
  code, rest, stderr = app.stop()
  assert code == 0, stderr
  assert rest.startswith('Stopped after'), rest
  assert 'Traceback' not in stderr


def test_upload_and_pick_give_translates_output(driver, trained_workdir, tmp_path):
  photo = str(tmp_path / 'photo.png')
  image = np.random.default_rng(5).integers(0, 256, (23, 31, 3), dtype=np.uint8)
  Image.fromarray(image).save(photo)
  app = browser.App(f'--workdir={trained_workdir}')
  try:
    assert app.url.startswith('http://127.0.0.1:')
    driver.get(app.url)
    browser.wait_ready(driver)
    directions = [o.get_attribute('value') for o in select(driver, 'direction').options]
    assert directions == ['AtoB', 'BtoA']

    # Upload a photo, translate it B→A, read back the download at full size.
    by_id(driver, 'file').send_keys(photo)
    select(driver, 'direction').select_by_value('BtoA')
    browser.click_translate(driver)
    assert by_id(driver, 'error').text == ''
    got, name = page_output(driver)
    assert name == 'photo_BtoA.png'
    want = translated(trained_workdir, photo, 'BtoA', tmp_path)
    assert got.shape == want.shape == (23, 31, 3)
    assert np.abs(got - want).max() <= 1
    assert by_id(driver, 'input-size').text == '(31×23)'

    # Pick a test image of the checkpoint's own test split, translate it A→B.
    select(driver, 'direction').select_by_value('AtoB')
    picked = select(driver, 'example')
    picked.select_by_index(2)
    example_name = picked.first_selected_option.text
    browser.wait_for_source(driver, example_name)
    browser.click_translate(driver)
    got, name = page_output(driver)
    assert name == example_name.replace('.png', '_AtoB.png')
    example = str(tmp_path / example_name)
    with urllib.request.urlopen(app.url + 'api/example?direction=AtoB&index=1') as r:
      with open(example, 'wb') as f:
        f.write(r.read())
    want = translated(trained_workdir, example, 'AtoB', tmp_path)
    assert np.abs(got - want).max() <= 1
    assert 'Traceback' not in driver.page_source
  finally:
    stop_cleanly(app)


def test_errors_are_shown_on_the_page(driver, tmp_path):
  zoo = str(tmp_path / 'zoo')
  convert.convert(zoo, g_AtoB=os.path.join(DATA, 'G_resnet6_ngf6.pth'))
  app = browser.App(f'--workdir={zoo}')
  try:
    driver.get(app.url)
    browser.wait_ready(driver)
    # The zoo model has one generator: B→A is listed, but cannot be chosen.
    option = select(driver, 'direction').options[1]
    assert option.text == 'B→A (G_B): not in this checkpoint'
    assert not option.is_enabled()
    assert not by_id(driver, 'example').is_enabled()  # Nothing to pick: no dataset.

    browser.click_translate(driver)
    assert by_id(driver, 'error').text == (
      'No image: upload one or pick a test image first.'
    )

    notes = tmp_path / 'notes.png'
    notes.write_bytes(b'these are notes, not a picture')
    by_id(driver, 'file').send_keys(str(notes))
    browser.click_translate(driver)
    assert by_id(driver, 'error').text.startswith(
      'notes.png is not an image this app can read (UnidentifiedImageError);'
    )

    # A page older than the checkpoint (or a hand-made request) asking for B→A.
    photo = tmp_path / 'photo.jpg'
    Image.fromarray(np.full((9, 11, 3), 90, np.uint8)).save(photo)
    by_id(driver, 'file').send_keys(str(photo))
    driver.execute_script(
      'document.querySelector("#direction option[value=BtoA]").disabled = false'
    )
    select(driver, 'direction').select_by_value('BtoA')
    browser.click_translate(driver)
    assert by_id(driver, 'error').text == (
      'This checkpoint has no B→A generator (G_B), so it translates A→B only.'
    )
    assert by_id(driver, 'download').get_attribute('href') is None

    select(driver, 'direction').select_by_value('AtoB')
    browser.click_translate(driver)
    assert by_id(driver, 'error').text == ''
    got, _ = page_output(driver)
    assert got.shape == (9, 11, 3)
    assert 'Traceback' not in driver.page_source
  finally:
    stop_cleanly(app)
