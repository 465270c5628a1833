"""Drift in the web UI: a day of credit limits shifted on purpose drifts against a
pinned week (`featureline drift`), and `featureline ui` shows it on the feature's page
(its statistics, the verdict and a chart, rendered in Chromium and checked non-blank)
and in its /metrics (featureline_feature_drift 1, the alert's input); an unshifted
feature's page says no drift. The page also lists the feature's data-quality
expectations."""

from __future__ import annotations

import dataclasses
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from ui_process import UiProcess, start_ui

from featureline.cli.main import main
from featureline.settings import Settings

_STATS = str(Path(__file__).resolve().parents[1] / "stats")
if _STATS not in sys.path:
    sys.path.append(_STATS)

from stats_data import stats_repo, write_days  # noqa: E402


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiProcess]:
    root = tmp_path_factory.mktemp("ui-drift")
    offline = root / "offline"
    write_days(offline)
    specs = root / "specs.json"
    repo = stats_repo(offline)
    # Expectations on the page: a rule on credit_limit, the view's dead-letter policy.
    profile = dataclasses.replace(
        repo.views["user_profile"],
        tags={"dq.policy": "dead_letter"},
        field_tags={"credit_limit": {"dq.max": "5000", "dq.not_null": "true"}},
    )
    specs.write_text(dataclasses.replace(repo, views={**repo.views, "user_profile": profile}).to_json())
    env = {"FEATURELINE_SPECS_FILE": str(specs), "FEATURELINE_OFFLINE_DIR": str(offline),
           "FEATURELINE_HOME": str(root / "home"), "FEATURELINE_REPO": str(root / "no-repo")}  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        assert main(["stats", "--start", "2024-03-01", "--end", "2024-03-09"]) == 0
        week = ["--reference-start", "2024-03-01", "--reference-end", "2024-03-07"]
        assert main(["drift", *week, "--start", "2024-03-08", "--end", "2024-03-09", "--name", "week"]) == 0
    settings = dataclasses.replace(
        Settings.from_env(), repo=root / "no-repo", home=root / "home", offline_dir=str(offline)
    )
    ui = start_ui(settings, env_extra={"FEATURELINE_SPECS_FILE": str(specs)})
    try:
        yield ui
    finally:
        ui.stop()


def test_drift_shows_in_the_metrics(drifted: UiProcess) -> None:
    text = httpx.get(f"{drifted.url}/metrics", timeout=10).text
    flags = {
        s.labels["feature"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "featureline_feature_drift" and s.labels["view"] == "user_profile"
    }
    assert flags["credit_limit"] == 1.0
    assert flags["account_age_days"] == 0.0


def _colours(png: bytes) -> int:
    from PIL import Image

    return len(Image.open(io.BytesIO(png)).convert("RGB").getcolors(maxcolors=1 << 20) or [])


def test_the_feature_page_shows_statistics_verdict_and_chart(
    drifted: UiProcess, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(drifted.url + "/features/user_profile/credit_limit")
    verdict = browser.find_element(By.CSS_SELECTOR, "h3.drift-report").text
    assert "week" in verdict and "drifted" in verdict and "no drift" not in verdict
    rows = browser.find_elements(By.CSS_SELECTOR, "table.stats tr")
    assert len(rows) == 1 + 7  # header + the newest 7 days
    assert rows[1].text.startswith("2024-03-08")
    chart = browser.find_element(By.CSS_SELECTOR, "svg.drift")
    assert len(chart.find_elements(By.CSS_SELECTOR, "rect")) >= 10
    shot = tmp_path / "drift.png"
    png = chart.screenshot_as_png
    shot.write_bytes(png)
    assert _colours(png) >= 4, f"drift chart screenshot {shot} looks blank"
    browser.get(drifted.url + "/features/user_profile/account_age_days")
    assert "no drift" in browser.find_element(By.CSS_SELECTOR, "h3.drift-report").text


def test_the_feature_page_shows_its_expectations(drifted: UiProcess) -> None:
    import re

    page = httpx.get(f"{drifted.url}/features/user_profile/credit_limit", timeout=10).text
    cell = re.search(r'<td id="expectations">(.*?)</td>', page, re.S)
    assert cell is not None
    assert "max 5000" in cell.group(1) and "not_null" in cell.group(1)
    assert "stream policy: dead_letter" in cell.group(1)
    other = httpx.get(f"{drifted.url}/features/user_profile/account_age_days", timeout=10).text
    assert "none declared (dq.* tags)" in other
