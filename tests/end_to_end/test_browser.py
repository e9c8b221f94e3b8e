"""The two web UIs as people use them, in headless Chromium (Playwright driving the OS's `chromium`).

1. Airflow: log in, trigger `retrain` through its trigger form with a parameter, see the run succeed, and
   see the new champion on the "Fraud models" page.
2. MLflow: move the `champion` alias back to the previous version in the model version page (the manual
   rollback), then `batch_score` scores with that version, and the "Fraud models" page marks the move as
   made outside the platform.

Locally without Chromium these tests skip with the reason; with CI=true they fail instead (.ci/run installs
Chromium). Every step leaves a screenshot; on failure they are kept in test-artifacts/browser/<test>/.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from training_lib.lake.layout import PREDICTIONS
from training_lib.lake.storage import Lake
from training_lib.local.airflow_client import AirflowClient
from training_lib.simulation.scenario import SimulationConfig
from training_lib.simulation.simulator import Simulator, publish_validated_days

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
START = date(2026, 3, 1)
DAYS = [START + timedelta(days=i) for i in range(12)]
MODEL = "fraud-detector-ui"
STACK_SETTINGS = {"FRAUD_TRAINING_WINDOW_DAYS": "10", "FRAUD_MODEL_NAME": MODEL}
SIMULATION = SimulationConfig(seed=5, start=START, n_customers=3000, transactions_per_day=6000, label_delay_days=1)
TIMEOUT_MS = 60_000


def chromium_path() -> str:
    """The OS's Chromium; skip without it, except in CI where the browser tests must run."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail("CI=true but no `chromium` on PATH: .ci/run installs it with apt-get (Debian package chromium)")
    pytest.skip("no `chromium` on PATH: browser tests skipped locally (apt-get install chromium to run them)")


class Steps:
    """A page plus a numbered screenshot after every step."""

    def __init__(self, page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.count = 0

    def shot(self, name: str) -> None:
        self.count += 1
        self.page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def steps(browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Steps]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    recorder = Steps(page, tmp_path)
    try:
        yield recorder
    finally:
        failed = getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed
        if failed:
            with contextlib.suppress(Exception):  # the page may be gone; keep the earlier screenshots
                recorder.shot("at-failure")
            target = ARTIFACTS / request.node.name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(tmp_path, target, ignore=shutil.ignore_patterns("*.tmp"))
        context.close()


@pytest.fixture(scope="module")
def seeded(local_stack) -> Lake:
    lake = Lake(local_stack.settings)
    publish_validated_days(lake, Simulator(SIMULATION), DAYS, labelled=DAYS)
    client = local_stack.airflow()
    for dag_id in ("retrain", "rollback_model", "batch_score"):
        client.wait_for_dag(dag_id, timeout=180)
        client.set_paused(dag_id, False)
    return lake


def _registry(local_stack):
    from training_lib.modeling.registry import Registry

    return Registry(local_stack.settings)


def _trigger_and_wait(client: AirflowClient, dag_id: str, conf: dict) -> dict:
    """A run triggered through the API (not the part under test), waited for."""
    run = client.trigger(dag_id, conf)
    return client.wait_for_run(dag_id, run["dag_run_id"], timeout=900)


def _wait_for_manual_run(client: AirflowClient, dag_id: str, before: set[str], timeout: float = 900) -> dict:
    """The run a click in the UI started (its id is unknown to the test), waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [run for run in client.list_runs(dag_id) if run["dag_run_id"] not in before]
        if new and new[0]["state"] in {"success", "failed"}:
            return new[0]
        time.sleep(2)
    raise TimeoutError(f"no finished new run of {dag_id} after {timeout}s")


def login(steps: Steps, base: str, user: str, password: str) -> None:
    page = steps.page
    page.goto(f"{base}/")
    page.locator("input[name=username]").fill(user)
    page.locator("input[name=password]").fill(password)
    steps.shot("login-form")
    page.locator("input[name=password]").press("Enter")
    page.wait_for_url(lambda url: "/login" not in url, timeout=TIMEOUT_MS)
    page.get_by_role("link", name="Fraud models").first.wait_for()
    steps.shot("logged-in")


def test_airflow_trigger_retrain_from_the_form_and_see_the_champion(local_stack, seeded, steps: Steps) -> None:
    base = local_stack.stack.airflow_api_url
    client = local_stack.airflow()
    page = steps.page
    login(steps, base, local_stack.stack.airflow_admin_user, local_stack.airflow_password())

    page.goto(f"{base}/dags/retrain")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.locator("input[name=element_window_days]").fill("10")  # the "Training window (days)" field
    steps.shot("trigger-form")
    before = {run["dag_run_id"] for run in client.list_runs("retrain")}
    dialog.get_by_role("button", name="Trigger").click()

    run = _wait_for_manual_run(client, "retrain", before)
    assert run["state"] == "success", client.task_instances("retrain", run["dag_run_id"])
    assert run["conf"].get("window_days") == 10  # the form's parameter reached the run
    page.goto(f"{base}/dags/retrain/runs/{run['dag_run_id']}")
    page.get_by_text("success").first.wait_for()
    steps.shot("run-succeeded")

    champion = _registry(local_stack).champion()
    assert champion is not None
    page.get_by_role("link", name="Fraud models").first.click()
    frame = page.frame_locator("iframe").first
    frame.locator('[data-alias="champion"] .version').wait_for()
    assert frame.locator('[data-alias="champion"] .version').inner_text() == f"version {champion.version}"
    steps.shot("fraud-models-page")


def test_mlflow_manual_rollback_is_what_batch_score_uses(local_stack, seeded, steps: Steps) -> None:
    settings = local_stack.settings
    client = local_stack.airflow()
    registry = _registry(local_stack)
    if registry.champion() is None:  # the first test did not run (e.g. -k): make the first model here
        assert _trigger_and_wait(client, "retrain", {"force": True})["state"] == "success"
    # a second version, then an audited rollback to it: version 1 becomes "the previous version"
    assert _trigger_and_wait(client, "retrain", {"force": True, "window_days": 3})["state"] == "success"
    newest = max(int(v.version) for v in registry.client.search_model_versions(f"name='{MODEL}'"))
    rollback = {"version": newest, "reason": "browser test: try the newest version"}
    assert _trigger_and_wait(client, "rollback_model", rollback)["state"] == "success"
    assert registry.champion().version == str(newest)
    previous = registry.previous_champion()
    assert previous is not None and previous != str(newest)

    page = steps.page
    mlflow = settings.mlflow_tracking_uri
    page.goto(f"{mlflow}/#/models/{MODEL}/versions/{previous}")
    page.get_by_text(f"Version {previous}").first.wait_for()
    steps.shot("mlflow-version-page")
    page.locator('button[title="Add aliases"], button[title="Edit aliases"]').first.click()
    dialog = page.get_by_role("dialog")
    alias_input = dialog.get_by_role("combobox").first
    alias_input.fill("champion")
    alias_input.press("Enter")
    dialog.get_by_text(f'The "champion" alias is also being used on version {newest}').wait_for()
    steps.shot("alias-dialog")
    dialog.get_by_role("button", name="Save aliases").click()
    dialog.wait_for(state="hidden")
    steps.shot("alias-moved")
    assert registry.champion().version == previous  # the registry is the truth

    scored_day = DAYS[-1]
    run = _trigger_and_wait(client, "batch_score", {"day": scored_day.isoformat()})
    assert run["state"] == "success", client.task_instances("batch_score", run["dag_run_id"])
    versions = Lake(settings).read_partition(PREDICTIONS, scored_day, columns=["model_version"]).to_pandas()
    assert set(versions["model_version"].astype(str)) == {previous}

    base = local_stack.stack.airflow_api_url
    login(steps, base, local_stack.stack.airflow_admin_user, local_stack.airflow_password())
    page.goto(f"{base}/plugin/fraud-models")
    frame = page.frame_locator("iframe").first
    frame.locator("#outside-moves").wait_for()
    warning = frame.locator("#outside-moves").inner_text()
    assert f"is on version {previous} in the registry" in warning
    assert frame.locator('[data-alias="champion"] .version').inner_text() == f"version {previous}"
    steps.shot("fraud-models-outside-move")
