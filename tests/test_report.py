"""The demo report opens in headless Chromium: every image and audio element loads, no console errors."""

import shutil
from pathlib import Path

import pytest

from introspeech.report.demo import run_demo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, log=lambda m: None)


def test_report_is_autoescaped_html(report):
    html = report.read_text()
    assert html.startswith("<!doctype html>") and "<h2>Corpus</h2>" in html
    assert "<script" not in html
    for title in ("Letter patterns", "Neuron activation profiles"):
        assert f"<h2>{title}</h2>" in html


def test_demo_saves_profiles_that_replot_without_the_model(report):
    import json

    from introspeech.profiles import results

    folder = report.parent / "profiles"
    acc = results.load(folder)
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary["layers"]) == set(acc.layout.layers)
    again = results.summary(acc)
    assert json.dumps(again["findings"]) == json.dumps(summary["findings"])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (scripts/setup-system.sh)")
def test_report_loads_in_headless_chromium(report):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.src, e.complete && e.naturalWidth > 0])")
        assert images and all(ok for _, ok in images), images
        page.wait_for_function(
            "() => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error)", timeout=15000)
        audios = page.eval_on_selector_all("audio", "els => els.map(e => [e.src, e.error ? e.error.code : 0, e.duration])")
        assert audios and all(code == 0 and dur > 0 for _, code, dur in audios), audios
        page.screenshot(path=str(report.parent / "screenshot.png"), full_page=True)
        browser.close()
    assert not errors, errors
    assert (report.parent / "screenshot.png").stat().st_size > 10_000


def test_values_that_do_not_apply_print_a_dash():
    from introspeech.report.html import fragment

    assert str(fragment("{{ '%.2f'|format(x) }}|{{ '%.1f'|format(y) }}|{{ '%d %s'|format(3, 'a') }}",
                        x=float("nan"), y=None)) == "—|—|3 a"
    assert str(fragment("{{ '%.2f'|format(x) }}", x=0.125)) == "0.12"


def test_the_demo_measures_the_claims_on_real_clips_for_every_installed_model(report):
    import json

    from introspeech.models.packaged import PACKAGED

    html = report.read_text()
    assert "<h2>What models that learned from real speech tell us</h2>" in html
    summary = json.loads((report.parent / "findings" / "summary.json").read_text())
    names = {"built-in model", *(n for n, e in PACKAGED.items() if e.installed)}
    assert set(summary["models"]) == names
    for name in names:
        fr = summary["models"][name]["real"]["frames"]
        assert fr["utterances"] >= 8 and set(fr["F1"]) == set(fr["layers"])
        assert summary["verdicts"]["F1"]["results"][name]["real"]["holds"] in (True, False)
