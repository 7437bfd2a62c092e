"""Airflow's UI, as a person opens it: `make airflow` (Airflow standalone: scheduler, DAG processor, API
server) on loopback with this repository's DAGs, then Debian's headless Chromium (driven by selenium and
chromedriver) on the DAG list, one DAG's graph and its docs. Every DAG of every dataset spec is listed, the
graph has every task, and the doc_md renders as formatted text. Screenshots go to the test's temp dir."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO, _free_port
from tests.helpers import stop_processes

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOWN = "train_pipeline__cards"


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("Debian's chromium and chromium-driver are needed (make test installs them: make browser)")
    home = tmp_path_factory.mktemp("airflow-ui")
    port = _free_port()
    env = {**os.environ, "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__HOST": "127.0.0.1",
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
           "AIRFLOW__API_AUTH__JWT_SECRET": "trainyard-test-secret", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
    for k in [k for k in env if k.startswith("TRAINYARD_") or k.startswith("AIRFLOW_CTX_")]:
        env.pop(k)  # the repository's own dataset specs and settings, as a person's shell has them
    log = open(home / "make-airflow.log", "w")
    proc = subprocess.Popen(["make", "airflow", f"AIRFLOW_HOME={home}"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            assert proc.poll() is None, (home / "make-airflow.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/api/v2/dags?limit=100", timeout=5) as r:
                    if SHOWN.encode() in r.read():
                        break
            except OSError:
                pass
            time.sleep(2)
        else:
            raise AssertionError("Airflow's API server did not list the DAGs in 240 s: " +
                                 (home / "make-airflow.log").read_text()[-3000:])
        yield {"base": base, "home": home, "out": tmp_path_factory.mktemp("screenshots")}
    finally:
        stop_processes([proc], group=True)
        log.close()


@pytest.fixture(scope="module")
def browser(ui):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = ui["home"] / "chromium-profile"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1600,1000", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _expected() -> dict[str, object]:
    """The DAGs this repository defines for its own dataset specs, as the DAG processor parses them."""
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag.dags


def _wait(driver, css: str, timeout: float = 60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout).until(ec.presence_of_all_elements_located((By.CSS_SELECTOR, css)))


def _until(driver, condition, timeout: float = 60) -> None:
    """Wait until ``condition(driver)`` holds (a page renders in parts; a busy machine renders later), at
    most ``timeout`` seconds: the caller's assertions then say what is missing."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:  # an element the page re-rendered while it was read: read again
        WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        pass


def test_the_dag_list_shows_every_dag_of_every_dataset_spec(ui, browser):
    from selenium.webdriver.common.by import By
    dags = _expected()
    assert {d.split("__")[0] for d in dags} == {"train_pipeline", "score_pipeline", "monitor_pipeline"} and len(dags) >= 9
    browser.get(f"{ui['base']}/dags")
    _wait(browser, f"a[href$='/dags/{SHOWN}']")

    def listed(driver) -> set[str]:
        return {a.get_attribute("href").rsplit("/", 1)[-1] for a in driver.find_elements(By.CSS_SELECTOR, "a[href*='/dags/']")}
    _until(browser, lambda d: set(dags) <= listed(d))
    browser.save_screenshot(str(ui["out"] / "dag-list.png"))
    assert set(dags) <= listed(browser), sorted(set(dags) - listed(browser))


def test_each_dags_page_lists_its_tasks(ui, browser):
    for dag_id, dag in sorted(_expected().items()):
        browser.get(f"{ui['base']}/dags/{dag_id}")
        for task_id in dag.task_ids:
            _wait(browser, f"[data-testid='task-{task_id}']")


def test_the_graph_has_every_task_with_its_operator_and_the_docs_render(ui, browser):
    from selenium.webdriver.common.by import By
    dag = _expected()[SHOWN]
    browser.get(f"{ui['base']}/dags/{SHOWN}")
    _wait(browser, "button[aria-label^='Show Graph']")[0].click()
    _until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".react-flow__node")) >= len(dag.task_ids))
    nodes = browser.find_elements(By.CSS_SELECTOR, ".react-flow__node")
    assert sorted(n.get_attribute("data-id") for n in nodes) == sorted(dag.task_ids)
    text = " ".join(n.text for n in nodes)
    for task in dag.tasks:
        assert task.task_type in text, (task.task_id, task.task_type, text)
    browser.save_screenshot(str(ui["out"] / "graph.png"))

    _wait(browser, "[data-testid='markdown-button']")[0].click()
    dialog = _wait(browser, "[role='dialog']")[-1]
    _until(browser, lambda d: "landed → etl → validate" in dialog.text)
    shown = dialog.text
    assert "Retraining of the cards model" in shown and "landed → etl → validate" in shown
    bold = {b.text.strip() for b in dialog.find_elements(By.CSS_SELECTOR, "strong")}
    assert {"When.", "Which day.", "Waiting for the day."} <= bold, bold  # **...** rendered, not shown raw
    assert "**" not in shown and "###" not in shown
    browser.save_screenshot(str(ui["out"] / "docs.png"))
    assert all(Path(ui["out"] / f).stat().st_size > 10_000 for f in ("graph.png", "docs.png"))
