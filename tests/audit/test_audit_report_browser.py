"""The audit report opened in a real headless Chromium (the Debian package, through selenium and
/usr/bin/chromedriver): it renders without console errors, every plot image loads, and every number
the page shows (each element with ``data-key``) equals the number at that path of report.json,
written as the report's documented rule says (medreward.audit.report.format_number)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from medreward.audit.report import UNDEFINED, format_number, lookup, render_html, write_report
from medreward.audit.run import run_audit
from medreward.errors import MedrewardError
from medreward.tasks import get_task

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _rollouts(cases):
    """Rollouts with ids and 0/1 ratings: honest answers rated 1, hedges rated 0 (so agreement,
    calibration and the rollouts pool all appear in the report)."""
    rows, ratings = [], {}
    for i, case in enumerate(cases):
        truth = ", ".join(case["reference"]["substances"]) or "none"
        for j, (answer, rating) in enumerate(((truth, 1), ("opioids, ethanol, stimulants, benzodiazepines", 0))):
            ident = f"r{i}-{j}"
            rows.append({**case, "id": ident, "group": case["id"], "site": "north" if i % 2 else "south",
                         "completion": f"<think>Reviewed the findings.</think><answer>{answer}</answer>"})  # fmt: skip
            ratings[ident] = rating
    ratings["unknown-id"] = 1
    del ratings["r0-0"]
    return rows, ratings


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    cases = get_task("toxicology").generate(30, 5)
    rows, ratings = _rollouts(cases)
    report = run_audit("toxicology", rows, ratings=ratings, exploit_budget=30, slice_fields=("task", "site"), seed=2)
    out = tmp_path_factory.mktemp("report")
    html_path, json_path = write_report(report, out)
    return html_path, json.loads(json_path.read_text("utf-8"))


@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        # a skip on a developer's machine; under CI=true (which installs both) tests/conftest.py fails it
        pytest.skip(f"the browser test needs Debian's chromium and chromedriver ({CHROMIUM}, {CHROMEDRIVER}): "
                    "apt-get install chromium chromium-driver")  # fmt: skip
    profile = tempfile.mkdtemp(prefix="medreward-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1280,2000",
                f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page(driver, written):
    html_path, data = written
    driver.get(html_path.resolve().as_uri())
    return driver, data


def test_page_renders_without_console_errors(page):
    driver, _ = page
    assert driver.title.startswith("medreward audit")
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []


def test_every_plot_image_loads(page):
    driver, data = page
    images = driver.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.src.slice(0, 22)])"
    )
    alts = {alt for alt, *_ in images}
    # the plots the issue asks for, all present for this report
    assert {"reward distributions per baseline policy", "probe rewards relative to gold", "reliability curve",
            "completion length vs reward"} <= alts  # fmt: skip
    for alt, complete, width, prefix in images:
        assert complete and width > 0, f"image {alt!r} did not load"
        assert prefix == "data:image/png;base64,", f"image {alt!r} is not inlined"


def test_every_number_on_the_page_equals_report_json(page):
    from selenium.webdriver.common.by import By

    driver, data = page
    elements = driver.find_elements(By.CSS_SELECTOR, "[data-key]")
    shown = [(e.get_attribute("data-key"), e.text.strip()) for e in elements]
    keys = {key for key, _ in shown}
    # every part of the report shows its numbers
    for key in ("n_cases", "gold.mean", "baselines.toxidrome.mean", "probes.results.0.relative",
                "exploit.best_reward", "benchmark.pairwise_accuracy", "benchmark.best_of_4_accuracy",
                "benchmark.one_to_many_accuracy", "agreement.spearman.value", "agreement.kendall.ci_low",
                "calibration.ece", "calibration.brier", "calibration.bins.0.frac_pos", "ratings.n_missing_in_cases",
                "slices.site.0.mean", "slices.task.0.n", "zero_variance_groups", "length_reward.spearman.value"):  # fmt: skip
        assert key in keys, key
    assert len(shown) > 80
    for key, text in shown:
        value = lookup(data, key)
        assert value is None or isinstance(value, (int, float)), key
        assert text == format_number(value), f"{key}: page shows {text!r}, report.json has {value!r}"
        if value is not None and not isinstance(value, int):
            assert abs(float(text) - value) <= 0.0005 + 1e-12


def test_unmatched_rating_ids_are_listed_on_the_page(page):
    driver, data = page
    # ratings with ids on one side only are reported, not dropped silently
    assert data["ratings"]["missing_in_cases"] == ["unknown-id"]
    assert data["ratings"]["missing_in_ratings"] == ["r0-0"]
    assert "unknown-id" in driver.page_source


def test_page_is_self_contained(written):
    html_path, _ = written
    text = html_path.read_text("utf-8")
    assert "<script" not in text.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!data:)""", text), "a resource that is not inlined"
    assert "url(" not in text and "@import" not in text


def test_format_rule():
    assert [format_number(v) for v in (0, 12, 0.5, 1 / 3, -0.0004, None)] == ["0", "12", "0.500", "0.333", "0.000", UNDEFINED]


def test_missing_matplotlib_names_the_extra(monkeypatch, written):
    _, data = written
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(MedrewardError, match=r"pip install 'medreward\[audit\]'"):
        render_html(data)


def test_output_folder_that_is_a_file(tmp_path, written):
    _, data = written
    target = tmp_path / "report"
    target.write_text("x")
    with pytest.raises(MedrewardError, match="is a file"):
        write_report(data, target)
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        with pytest.raises(MedrewardError, match="cannot write"):
            write_report(data, locked / "inner")
