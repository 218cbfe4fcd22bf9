"""The report in a real browser: Debian's headless Chromium, driven by playwright.

No browser is downloaded: playwright launches the system Chromium (`make test` installs
it with apt when missing). The page is opened from disk with the network features of
the browser switched off, and must load without a console error, show the expected
texts, answer its button, and render a screenshot that is not blank.
"""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

import tracr
from tests.plot import programs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    assert os.path.exists(CHROMIUM), "Chromium is missing: apt-get install -y chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def loaded(browser, tmp_path_factory):
    """(page, console messages, page errors, requested URLs) for the sort_unique report."""
    program, model, _ = programs.compiled()
    path = tracr.report(
        model,
        [[2, 4, 3, 1], [3, 1]],
        tmp_path_factory.mktemp("report") / "sort.html",
        program=program,
    )
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console, errors, requests = [], [], []
    page.on("console", lambda message: console.append((message.type, message.text)))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    yield page, console, errors, requests, path
    page.close()


def test_loads_without_console_errors_or_requests(loaded):
    page, console, errors, requests, path = loaded
    assert errors == []
    assert [m for m in console if m[0] in ("error", "warning")] == []
    assert requests == [path.as_uri()]  # nothing fetched besides the file itself


def test_shows_the_expected_texts(loaded):
    page, *_ = loaded
    _, _, names = programs.compiled()
    text = page.inner_text("body")
    for expected in (
        "Model summary",
        "Program graph",
        "Layer allocation",
        "Circuit map",
        "Input 0: BOS 2 4 3 1",
        "Input 1: BOS 3 1",
        "Attention patterns",
        f"layer 1 head 0: {names['sort']}",
    ):
        assert expected in text
    decoded = page.locator("table.decoded").first.inner_text()
    assert [line.split("\t")[-1] for line in decoded.splitlines()[1:]] == [
        "BOS",
        "1",
        "2",
        "3",
        "4",
    ]
    graph = page.locator("svg.graph")
    assert graph.is_visible()
    assert graph.locator("g.sop").count() == 4
    box = graph.locator(f"g.sop[data-sop='{names['sort']}'] text").all_text_contents()
    assert box == [names["sort"], "categorical, 5 values", "L1 attn head 0"]


def test_button_opens_every_residual_stage(loaded):
    page, *_ = loaded
    assert page.locator("details[open]").count() == 2  # the last stage of each input
    page.click("#toggle")
    assert page.locator("details[open]").count() == page.locator("details").count() == 10
    page.click("#toggle")
    assert page.locator("details[open]").count() == 0


def test_screenshot_is_not_blank(loaded):
    page, *_ = loaded
    image = np.asarray(Image.open(io.BytesIO(page.screenshot())).convert("RGB"))
    assert image.shape == (1000, 1400, 3)
    not_white = np.any(image < 235, axis=-1)
    assert 0.02 < not_white.mean() < 0.6  # text, tables and the graph, on a white page
    # the graph's box colours are there (categorical SOps are light blue)
    colours = {tuple(c) for c in image.reshape(-1, 3)[::7]}
    assert (0xDB, 0xE9, 0xF6) in colours
