"""The HTML report opens in a real headless Chromium: not blank, a section per claim, failing
first, with the interval pictures, a sweep's curve and a head's attention heatmap in the DOM."""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import zlib

import pytest
from test_plugin import TRUE_AND_FALSE

CLAIMS = TRUE_AND_FALSE + """\
- id: prev-head
  says: "L0H1's previous-token score"
  measure: {head_score: {head: L0H1, pattern: previous_token}}
  expect: {at_least: 0}
- id: scaling-moves-attention
  says: "scaling L1H0's scores towards position 0 moves its attention there"
  sweep: {factor: [0, 0.5, 1, 2, 4]}
  under: {scale_attention: {head: L1H0, from: last, to: 0, factor: $factor}}
  measure: {attention: {head: L1H0, from: last, to: 0}}
  expect: {slope: {at_least: -100}}
"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    return exe


def browse(exe, tmp_path, url, *args) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile{len(list(tmp_path.glob('profile*')))}"
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args, url], capture_output=True, text=True,
                          timeout=120)


def png_pixels(path) -> bytes:
    """The raw scanlines of a PNG (filter bytes included): enough to tell a blank page from a drawn one."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(idat)


def test_html_report_in_headless_chromium(pytester, hyp, tmp_path):
    exe = chromium()
    path = hyp(CLAIMS, prompts="{generator: repeated_tokens, n: 60, seed: 1}")
    page = tmp_path / "report.html"
    pytester.runpytest(str(path), "-p", "no:cacheprovider", "--cc-update-baselines")
    res = pytester.runpytest(str(path), "-p", "no:cacheprovider", f"--cc-html={page}")
    res.assert_outcomes(passed=3, failed=1)
    text = page.read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", text) and "<script" not in text  # self-contained

    dom = browse(exe, tmp_path, page.as_uri(), "--dump-dom").stdout
    verdicts = re.findall(r'<section class="claim" id="[^"]+" data-verdict="(\w+)"', dom)
    assert verdicts == ["fail", "pass", "pass", "pass"]  # a section per claim, failing first
    assert 'id="t.hyp.yaml::false-claim"' in dom and "A random model is right half the time" in dom
    assert dom.count('<svg class="interval"') == 4 and dom.count('<svg class="curve"') == 1
    assert 'class="heatmap"' in dom and "attention of L0H1" in dom and "attention of L1H0" in dom
    assert "baseline verdict fail" in dom and "Δ+0" in dom  # compared with the baseline just written

    shot = tmp_path / "shot.png"
    browse(exe, tmp_path, page.as_uri(), f"--screenshot={shot}", "--window-size=1000,1200")
    pixels = png_pixels(shot)
    assert len(set(pixels)) > 50, "the screenshot is blank"
    white = pixels.count(255) / len(pixels)
    assert white < 0.98, f"the screenshot is {white:.1%} white"


def test_a_blank_page_fails_the_blank_check(tmp_path):
    """The screenshot check is not a rubber stamp: an empty page is caught."""
    exe = chromium()
    page = tmp_path / "empty.html"
    page.write_text("<!doctype html><html><body></body></html>")
    shot = tmp_path / "shot.png"
    browse(exe, tmp_path, page.as_uri(), f"--screenshot={shot}", "--window-size=400,300")
    assert len(set(png_pixels(shot))) <= 50


def test_a_checkpoint_series_and_quantified_cases_are_drawn_as_one_picture_each(pytester, hyp, tiny_dir, tmp_path):
    """Issue 23's pictures: a claim over checkpoints is one section with its value over them (the
    interval as a band), not a card per checkpoint; a claim with several cases is one forest plot
    of every case against its region; the attention heatmap is averaged over the prompts."""
    from conftest import TINY, save_model
    from test_regression import CLAIMS, PROMPTS, checkpoints_beside

    exe = chromium()
    checkpoints_beside(tmp_path, tiny_dir, save_model(tmp_path / "other", TINY, seed=7))
    path = hyp(CLAIMS, prompts=PROMPTS, extra="checkpoints: ckpts/step-*\n")
    page = tmp_path / "series.html"
    pytester.runpytest(str(path), "-p", "no:cacheprovider", f"--cc-html={page}").assert_outcomes(passed=4)
    dom = browse(exe, tmp_path, page.as_uri(), "--dump-dom").stdout
    assert dom.count('<section class="claim series"') == 2 and dom.count('<svg class="series"') == 2
    assert "over 2 checkpoints" in dom and "step-1" in dom and "step-2" in dom
    assert "the chart and rows show the first of 2 cases" in dom  # prev-head names two heads
    single = hyp(CLAIMS, prompts=PROMPTS, name="one.hyp.yaml")
    page = tmp_path / "one.html"
    pytester.runpytest(str(single), "-p", "no:cacheprovider", f"--cc-html={page}").assert_outcomes(passed=2)
    dom = browse(exe, tmp_path, page.as_uri(), "--dump-dom").stdout
    assert dom.count('<svg class="forest"') == 1 and dom.count('<svg class="interval"') == 1
    assert "attention of L0H1 averaged over 60 prompts of one length" in dom


def test_a_case_without_a_bound_is_drawn_to_the_axis_end():
    """A refused side (no bound at the claim's level: low or high null) and a baseline written with a
    null bound draw to the axis's end; they used to stop the HTML report with a TypeError."""
    from circuitcheck.report.html_report import forest_svg, interval_svg

    case = {"label": "L0H1", "value": 0.5, "low": None, "high": 0.7, "bounds": [0.4, None], "verdict": "inconclusive"}
    base = {"value": 0.55, "low": 0.45, "high": None}
    svg = interval_svg(case, base)
    assert svg.count("<line") == 3 and 'cx="' in svg
    assert forest_svg([case, {**case, "low": 0.45, "high": None}]).count("<circle") == 2
