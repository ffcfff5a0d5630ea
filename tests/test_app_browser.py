"""The app in a real browser: headless Chromium drives every tab of `tractable app`.

The app runs as its own process on a loopback port, serving a tiny class-conditional
PixelCNN++ and a tiny Glow trained here on the bundled MNIST digits. The browser moves
sliders, clicks buttons, uploads a file, and every returned picture must be a valid PNG
that changes when the inputs change. It also checks that the page works offline: every
request the browser makes goes to the app's own address, and the app process opens no
connection beyond loopback (an audit hook on socket.connect / getaddrinfo). Uploaded
files must be gone from disk right after they are read, and the app's temporary folder
when it stops.

Needs Debian's chromium and chromium-driver (the Makefile's test prerequisites install
them) and the `app` extra; skipped with the reason otherwise. Set
TRACTABLE_APP_SCREENSHOTS=DIR to keep a screenshot of each tab there (docs/img uses
TRACTABLE_APP_MODELS=RUN,RUN to show better-trained models).
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from tractable.cli import main
from tractable.data import load_dataset

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[1]
SHOTS = os.environ.get("TRACTABLE_APP_SCREENSHOTS")

selenium = pytest.importorskip("selenium", reason="selenium is in the dev extra: "
                               "pip install -e '.[dev]'")
pytest.importorskip("gradio", reason="the app needs the app extra: pip install -e '.[app]'")
if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
    pytest.skip("no browser: apt-get install chromium chromium-driver (make test does)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

GUARD = r"""
import sys
LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")
def hook(event, args):
    host = None
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1]:
        host = str(args[1][0])
    elif event == "socket.getaddrinfo":
        host = str(args[0])
    if host is not None and host != "None" and not host.startswith(LOOPBACK):
        print(f"EXTERNAL NETWORK ACCESS: {event} {host}", file=sys.stderr, flush=True)
sys.addaudithook(hook)
from tractable.cli import main
sys.exit(main(sys.argv[1:]))
"""


# ---- the models, the app process, the browser -------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[str]:
    if os.environ.get("TRACTABLE_APP_MODELS"):
        return os.environ["TRACTABLE_APP_MODELS"].split(",")
    root = tmp_path_factory.mktemp("app-runs")
    common = ["--limit-test", "60", "--batch-size", "8", "--samples-per-eval", "4",
              "--no-progress", "--quiet"]
    assert main(["train", "--model", "pixelcnn++", "--nr-resnet", "1", "--nr-filters", "8",
                 "--nr-logistic-mix", "2", "--conditional", "--limit-train", "64",
                 "--epochs", "1", *common, "--out", str(root / "pixelcnn")]) == 0
    assert main(["train", "--model", "glow", "--K", "1", "--L", "1", "--width", "8",
                 "--max-steps", "4", "--limit-train", "32", *common,
                 "--out", str(root / "glow")]) == 0
    return [str(root / "pixelcnn"), str(root / "glow")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app(runs, tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("app-log") / "app.log"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", GUARD, "app", *runs, "--port", str(port),
                                 "--histogram-images", "60"], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, f"the app exited: {log.read_text()}"
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the app did not start: {log.read_text()}"
            time.sleep(1)
        temp = re.search(r"temporary files in (\S+),", log.read_text())
        assert temp, log.read_text()
        yield {"url": url, "temp": Path(temp.group(1)), "log": log, "proc": proc}
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert not Path(temp.group(1)).exists(), "the app left its temporary folder behind"
    assert "EXTERNAL NETWORK ACCESS" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def browser(app, tmp_path_factory):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1400",
                 f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.get(app["url"])
    wait(driver, 60).until(lambda d: d.find_elements(By.ID, "sample-button"))
    yield driver
    driver.quit()


def wait(driver, seconds: float = 120) -> WebDriverWait:
    return WebDriverWait(driver, seconds, poll_frequency=0.25)


# ---- helpers -----------------------------------------------------------------------------
def image_src(driver, elem_id: str) -> str | None:
    imgs = driver.find_elements(By.CSS_SELECTOR, f"#{elem_id} img")
    return imgs[0].get_attribute("src") if imgs else None


def fetch_png(src: str) -> Image.Image:
    """The picture behind an <img>: must be a PNG that decodes."""
    with urllib.request.urlopen(src, timeout=30) as r:
        data = r.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{src} is not a PNG"
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.format == "PNG" and img.width > 0
    return img


def new_image(driver, elem_id: str, before: str | None) -> Image.Image:
    """Wait until the image in `elem_id` is there and differs from `before`; fetch it."""
    wait(driver).until(lambda d: image_src(d, elem_id) not in (None, before))
    return fetch_png(image_src(driver, elem_id))


def nudge(driver, elem_id: str, key: str, times: int) -> None:
    """Move a slider the way a keyboard user does (native input/change events)."""
    slider = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input[type=range]")
    for _ in range(times):
        slider.send_keys(key)


def open_tab(driver, name: str) -> None:
    tab = [b for b in driver.find_elements(By.CSS_SELECTOR, "button[role=tab]")
           if b.text.strip() == name]
    assert tab, f"no tab {name!r}"
    tab[0].click()
    time.sleep(0.5)


def click(driver, elem_id: str) -> None:
    driver.find_element(By.ID, elem_id).click()


def shoot(driver, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.3)
        driver.save_screenshot(str(Path(SHOTS) / f"app_{name}.png"))


def pixels(img: Image.Image) -> bytes:
    return img.convert("RGB").tobytes()


# ---- the tabs ----------------------------------------------------------------------------
def test_sample_tab_slider_and_button_return_new_pngs(browser):
    open_tab(browser, "Sample")
    click(browser, "sample-button")
    first = new_image(browser, "samples", None)
    before = image_src(browser, "samples")
    nudge(browser, "temperature", Keys.ARROW_LEFT, 6)  # 1.0 -> 0.7
    nudge(browser, "batch", Keys.ARROW_LEFT, 7)  # 16 -> 9 images
    value = browser.find_element(By.CSS_SELECTOR, "#temperature input[type=number]")
    assert float(value.get_attribute("value")) == pytest.approx(0.7)
    click(browser, "sample-button")
    second = new_image(browser, "samples", before)
    assert second.size != first.size  # a 3x3 grid instead of 4x4
    assert "9 samples, temperature 0.7" in browser.find_element(By.ID, "samples").find_element(
        By.XPATH, "following::*[contains(., 'samples, temperature')]").text
    shoot(browser, "sample")


def test_complete_tab_with_an_uploaded_image(browser, app, tmp_path):
    digit = load_dataset("mnist-mini", "test").images[3, 0].numpy()
    upload = tmp_path / "my-digit.png"
    Image.fromarray(digit).resize((56, 70)).save(upload)  # wrong size: padded, resized
    open_tab(browser, "Complete")
    field = browser.find_element(By.CSS_SELECTOR, "#complete-upload input[type=file]")
    field.send_keys(str(upload))
    preview = new_image(browser, "complete-preview", None)
    assert preview.width > 0
    # padded with its own (black) background to a square, not cropped, then resized
    assert "padded from 56x70 to 70x70 with its background colour" in browser.page_source
    assert "resized from 70x70 to 28x28" in browser.page_source
    # read, validated, and deleted: nothing of it is left in the app's folder
    assert not [p for p in app["temp"].rglob("*") if p.name == upload.name]
    nudge(browser, "completions", Keys.ARROW_LEFT, 4)  # 8 -> 4 completions
    click(browser, "complete-button")
    grid = new_image(browser, "completions-out", None)
    before = image_src(browser, "completions-out")
    nudge(browser, "rows", Keys.ARROW_LEFT, 4)  # keep 10 rows instead of 14
    click(browser, "complete-button")
    again = new_image(browser, "completions-out", before)
    assert again.size == grid.size and pixels(again) != pixels(grid)
    shoot(browser, "complete")


def test_likelihood_tab_scores_a_test_image(browser):
    open_tab(browser, "Likelihood")
    click(browser, "likelihood-use-test")
    new_image(browser, "likelihood-preview", None)
    click(browser, "score-button")
    heat = new_image(browser, "heatmap", None)
    hist = new_image(browser, "histogram", None)
    assert heat.width > heat.height  # the map and its colour bar
    assert hist.size == (420, 220)
    text = browser.find_element(By.ID, "score").text
    assert re.search(r"\d+\.\d{4} bits/dim", text) and "test images" in text
    shoot(browser, "likelihood")


def test_a_non_image_upload_is_refused_with_a_message(browser, tmp_path):
    fake = tmp_path / "not-an-image.png"
    fake.write_text("hello, this is text")
    open_tab(browser, "Likelihood")
    field = browser.find_element(By.CSS_SELECTOR, "#likelihood-upload input[type=file]")
    field.send_keys(str(fake))
    wait(browser, 60).until(lambda d: "the file is not an image" in d.page_source)
    # the score of the test image picked before is gone with it: nothing stale stays
    wait(browser, 30).until(lambda d: d.find_element(By.ID, "score").text.strip() == "")


def choose_model(driver, family_hint: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, "#model input")
    box.click()
    options = wait(driver, 30).until(
        lambda d: [o for o in d.find_elements(By.CSS_SELECTOR, "[role=option]")
                   if family_hint in o.text])
    options[0].click()
    wait(driver, 30).until(lambda d: family_hint in d.find_element(
        By.XPATH, "//*[contains(@class, 'tractable-note')]").text)


def test_edit_tab_moves_attribute_sliders_and_blends_two_images(browser):
    choose_model(browser, "glow")
    open_tab(browser, "Edit")
    click(browser, "edit-use-test")
    new_image(browser, "edit-preview", None)
    click(browser, "edit-button")
    plain = new_image(browser, "edited", None)
    before = image_src(browser, "edited")
    nudge(browser, "attribute-3", Keys.ARROW_RIGHT, 8)  # α = 0.8 along class 3
    click(browser, "edit-button")
    moved = new_image(browser, "edited", before)
    assert moved.size == plain.size and pixels(moved) != pixels(plain)
    index = browser.find_element(By.CSS_SELECTOR, "#blend-index input")
    index.clear()
    index.send_keys("5")
    click(browser, "blend-use-test")
    new_image(browser, "blend-preview", None)
    click(browser, "blend-button")
    strip = new_image(browser, "blend-strip", None)
    assert strip.width > 4 * strip.height  # 8 images in a row
    before = image_src(browser, "blended")
    nudge(browser, "interpolation", Keys.ARROW_RIGHT, 6)
    click(browser, "blend-button")
    new_image(browser, "blended", before)
    shoot(browser, "edit")


def test_the_page_made_no_request_beyond_the_app(browser, app):
    import json

    urls = []
    for entry in browser.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    web = [u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:"))]
    assert len(web) > 10  # the page, its scripts, styles, fonts, API calls, pictures
    here = app["url"].split("://", 1)[1]  # 127.0.0.1:PORT/ (http and websocket alike)
    outside = [u for u in web if u.split("://", 1)[1].split("/", 1)[0] + "/" != here]
    assert not outside, f"the page asked for {outside[:5]}"

