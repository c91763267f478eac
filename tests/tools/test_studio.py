"""realmpy Studio in a real browser (Debian's chromium driven by Selenium through
chromium-driver), on a file made by another process with its own models.

The browser tests skip where chromium, chromium-driver or selenium is missing,
except under CI (``CI=true``), where ``.ci/run`` installs them and they must
run.  The screenshot of the main view is saved as ``studio-main.png`` in
``$REALMPY_TEST_ARTIFACTS`` (default: ``test-artifacts/`` in the repository).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.tools.conftest import ROOT, child_env, run_app, script

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT = 20.0  # seconds: a bound on each wait for the page, not a timing threshold


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.base = url.split("/?")[0]
        self.token = url.split("token=")[1]

    def api(self, path: str, body: dict[str, Any] | None = None, token: bool = True) -> Any:
        req = urllib.request.Request(
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            headers={"X-Studio-Token": self.token} if token else {},
        )
        with urllib.request.urlopen(req, timeout=WAIT) as resp:
            return json.loads(resp.read())


def _serve(path: str, *extra: str) -> Iterator[Served]:
    proc = subprocess.Popen(
        [script("realmpy"), "studio", path, "--no-browser", "--port", "0", *extra],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        url = proc.stdout.readline().strip()
        assert first.startswith("realmpy studio: serving"), (
            first,
            proc.stderr and proc.stderr.read(),
        )
        served = Served(proc, url)
        yield served
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT)


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, str]]:
    path = str(tmp_path_factory.mktemp("studio") / "app.realm")
    run_app("make", path)
    for served in _serve(path):
        yield served, path


def test_every_request_needs_the_token(studio: tuple[Served, str]) -> None:
    served, _ = studio
    with pytest.raises(urllib.error.HTTPError) as err:
        served.api("/api/info", token=False)
    assert err.value.code == 403
    info = served.api("/api/info")
    assert {c["name"]: c["count"] for c in info["classes"]} == {
        "Person": 3,
        "Car": 3,
        "Place": 1,
        "Stop": None,
    }


def test_read_only_turns_editing_off(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "ro.realm")
    run_app("make", path)
    for served in _serve(path, "--read-only"):
        with pytest.raises(urllib.error.HTTPError) as err:
            served.api("/api/delete", {"class": "Car", "id": 1})
        assert err.value.code == 403
        assert served.api("/api/info")["read_only"] is True


# ----------------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [
        name
        for name, found in (("chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER))
        if not found
    ]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests; missing: {', '.join(missing)}")
        pytest.skip(f"no browser to drive: missing {', '.join(missing)}")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,850",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(condition)


def _rows(driver: Any) -> list[str]:
    # Read in one script: the page re-renders its table on each change.
    rows: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('#table tbody tr')].map((r) => r.innerText);"
    )
    return rows


def _count(driver: Any, name: str) -> str:
    text: str = driver.execute_script(
        "const c = document.querySelector(`#classes li[data-class='${arguments[0]}'] .count`);"
        "return c ? c.textContent : '';",
        name,
    )
    return text


def test_studio_in_the_browser(browser: Any, studio: tuple[Served, str]) -> None:
    from selenium.webdriver.common.by import By

    served, path = studio
    d = browser
    d.get(served.url)
    # the classes with their counts, the first class's table, the live stream
    _wait(d, lambda d: _count(d, "Person") == "3" and len(_rows(d)) == 3)
    assert _count(d, "Car") == "3" and _count(d, "Stop") == "embedded"
    _wait(d, lambda d: d.find_element(By.ID, "live").text == "live")

    # a query, and an error shown at its position
    box = d.find_element(By.ID, "query")
    box.send_keys("age > 30 SORT(age DESC)")
    d.find_element(By.ID, "run").click()
    _wait(d, lambda d: len(_rows(d)) == 2 and _rows(d)[0].split()[1] == "Cé")
    box.clear()
    box.send_keys("age >")
    d.find_element(By.ID, "run").click()
    error = _wait(d, lambda d: d.find_element(By.ID, "query-error"))
    _wait(d, lambda d: error.is_displayed())
    assert error.get_attribute("data-position") == "5"
    box.clear()
    d.find_element(By.ID, "run").click()
    _wait(d, lambda d: len(_rows(d)) == 3)

    # follow a link: Ann's friend is Cé
    d.find_elements(By.CSS_SELECTOR, "#table tbody tr")[0].click()
    _wait(d, lambda d: "Ann" in d.find_element(By.ID, "detail-props").text)
    d.find_element(By.CSS_SELECTOR, '#detail-props td[data-prop="friend"] .link').click()
    _wait(d, lambda d: "Cé" in d.find_element(By.ID, "detail-props").text)

    artefacts = pathlib.Path(os.environ.get("REALMPY_TEST_ARTIFACTS") or ROOT / "test-artifacts")
    artefacts.mkdir(parents=True, exist_ok=True)
    d.execute_script(
        "document.querySelector('.table-wrap').scrollLeft = 0;"
    )  # (the click scrolled it)
    d.save_screenshot(str(artefacts / "studio-main.png"))

    # edit a value; read it back through the library, in the app's own process
    d.find_element(By.CSS_SELECTOR, 'button[data-edit="age"]').click()
    editor = d.find_element(By.CSS_SELECTOR, 'textarea[data-editor="age"]')
    editor.clear()
    editor.send_keys("51")
    d.find_element(By.CSS_SELECTOR, 'button[data-save="age"]').click()
    _wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, 'button[data-edit="age"]'))
    shown = json.loads(run_app("show", path))
    assert [p["age"] for p in shown if p["$class"] == "Person"] == ["20", "35", "51"]

    # another process commits: the page shows it without a reload
    d.find_element(By.CSS_SELECTOR, '#classes li[data-class="Car"]').click()
    _wait(d, lambda d: len(_rows(d)) == 3)
    d.execute_script("window.notReloaded = true;")
    run_app("add-car", path, "Lada")
    _wait(d, lambda d: _count(d, "Car") == "4" and any("Lada" in r for r in _rows(d)))
    assert d.execute_script("return window.notReloaded === true;")

    # sort by a column (twice: descending), add an object with the form, delete it
    d.find_element(By.CSS_SELECTOR, '#table th[data-prop="miles"]').click()
    _wait(d, lambda d: [r.split()[0] for r in _rows(d)] == ["Saab", "Lada", "Tesla", "Fiat"])
    d.find_element(By.CSS_SELECTOR, '#table th[data-prop="miles"]').click()
    _wait(d, lambda d: [r.split()[0] for r in _rows(d)] == ["Fiat", "Tesla", "Lada", "Saab"])
    d.find_element(By.ID, "add").click()
    make = _wait(d, lambda d: d.find_element(By.CSS_SELECTOR, 'textarea[data-new="make"]'))
    make.clear()
    make.send_keys("Skoda")
    d.find_element(By.ID, "create").click()
    _wait(d, lambda d: _count(d, "Car") == "5" and "Skoda" in d.find_element(By.ID, "detail").text)
    d.find_element(By.ID, "delete").click()
    _wait(d, lambda d: _count(d, "Car") == "4" and not any("Skoda" in r for r in _rows(d)))


def test_add_validate_delete_and_export_through_the_api(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "api.realm")
    run_app("make", path)
    for served in _serve(path):
        ann = {"$oid": "000000000000000000000001"}
        with pytest.raises(urllib.error.HTTPError) as err:  # the file stores no defaults
            served.api("/api/add", {"class": "Car", "values": {"make": "Lada"}})
        assert "missing required field 'miles'" in json.loads(err.value.read())["error"]
        extra = {"$dict": {"to": {"$link": ["Person", ann]}, "n": [1, {"$float": 2.0}]}}
        values = {"make": "Lada", "miles": 0, "owner": {"$link": ann}, "extra": extra}
        car = served.api("/api/add", {"class": "Car", "values": values})
        assert car["values"] == values  # a mixed value (links to any class) round-trips
        with pytest.raises(urllib.error.HTTPError) as err:
            served.api(
                "/api/update", {"class": "Person", "id": ann, "property": "age", "value": "x"}
            )
        assert err.value.code == 400
        assert "Person.age: expected an integer" in json.loads(err.value.read())["error"]
        backlinks = served.api(f"/api/object?class=Person&id={urllib.parse.quote(json.dumps(ann))}")
        assert {"class": "Car", "property": "owner", "ids": [1, 3, 4, 5], "total": 4} in backlinks[
            "backlinks"
        ]
        served.api("/api/delete", {"class": "Car", "id": car["id"]})
        assert served.api("/api/objects?class=Car")["total"] == 3
        req = urllib.request.Request(
            served.base + "/api/export?class=Car&format=csv&query=miles%20%3E%3D%20$0&args=[100]",
            headers={"X-Studio-Token": served.token},
        )
        with urllib.request.urlopen(req, timeout=WAIT) as resp:
            assert resp.read().decode().splitlines() == [
                "make,miles,owner,extra",
                'Tesla,200,"{""$link"":{""$oid"":""000000000000000000000001""}}",'
                '"{""$link"":[""Person"",{""$oid"":""000000000000000000000001""}]}"',
                'Fiat,300,"{""$link"":{""$oid"":""000000000000000000000001""}}","""5"""',
            ]
    assert json.loads(run_app("show", path))[0]["age"] == "20"  # the refused edit changed nothing
