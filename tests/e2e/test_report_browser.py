"""The report in a real browser: headless Chromium driven over the DevTools protocol.

Chromium is started with ``--remote-debugging-pipe`` (commands on fd 3, replies
and events on fd 4, each a JSON message ended by a NUL byte), so the test needs
nothing beyond the standard library: no websocket client, and no test code in
the report. It loads the report, collects console errors, exceptions and every
network request, measures each figure's rendered box and the verdict tables'
rows in the page, and saves a full-page screenshot to ``test-artifacts/``.

Without ``/usr/bin/chromium`` (Debian package ``chromium``) the test is skipped
on a developer machine and fails where the environment variable CI is set.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from reports import build
from reports.runs import VERDICT_IDS
from reports.testing import write_fake_run

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
SCREENSHOT = ARTIFACTS / "report-browser.png"
VIEWPORT_WIDTH, VIEWPORT_HEIGHT = 1200, 900
PROTOCOL_TIMEOUT_S = 20.0
"""Longest wait for one protocol reply or event (Chromium's start included)."""
CLOSE_TIMEOUT_S = 5.0
INK_LEVEL = 0.9
"""A screenshot pixel darker than this (in every channel's minimum, 0..1) is ink, not white paper."""
MIN_INK_FRACTION = 0.005
"""A painted figure has axes, ticks, text and lines: far more ink than this; a blank one has none."""
_FIRST_FREE_FD = 10
"""Pipe ends are moved to fds >= this, so placing them at 3 and 4 in the child cannot clobber one another."""
_ALLOWED_SCHEMES = ("file:", "data:", "about:")
_MEASURE = """(() => {
  const figures = [...document.querySelectorAll('svg.figure')].map(svg => {
    const r = svg.getBoundingClientRect();
    return {label: svg.getAttribute('aria-label'), width: r.width, height: r.height,
            top: r.top + window.scrollY, left: r.left + window.scrollX,
            texts: svg.querySelectorAll('text').length};
  });
  const tables = [...document.querySelectorAll('table.verdict')].map(
    t => [...t.querySelectorAll('tbody tr')].map(tr => tr.dataset.statement));
  return {figures, tables, scripts: document.scripts.length, title: document.title,
          width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight};
})()"""


class Browser:
    """Headless Chromium and one page, over the DevTools protocol on a pipe."""

    def __init__(self, user_data_dir: Path) -> None:
        cmd_read, cmd_write = os.pipe()
        evt_read, evt_write = os.pipe()
        child_in = fcntl.fcntl(cmd_read, fcntl.F_DUPFD_CLOEXEC, _FIRST_FREE_FD)
        child_out = fcntl.fcntl(evt_write, fcntl.F_DUPFD_CLOEXEC, _FIRST_FREE_FD)
        os.close(cmd_read)
        os.close(evt_write)

        def place_pipes() -> None:  # in the child, before exec: fd 3 reads commands, fd 4 writes replies
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        self.proc = subprocess.Popen(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-default-apps", "--no-first-run",
             f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe",
             f"--window-size={VIEWPORT_WIDTH},{VIEWPORT_HEIGHT}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=place_pipes,
        )
        os.close(child_in)
        os.close(child_out)
        self._out, self._in = cmd_write, evt_read
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self._in], [], [], remaining)[0]:
                raise TimeoutError("Chromium did not answer over the DevTools pipe in time")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise ConnectionError(f"Chromium closed the DevTools pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False) -> dict:
        """Send one command (to the page session unless ``browser``) and return its result."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if not browser:
            msg["sessionId"] = self.session
        os.write(self._out, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + PROTOCOL_TIMEOUT_S
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """Wait for the page's next event named ``method`` (events seen meanwhile are kept)."""
        deadline = time.monotonic() + PROTOCOL_TIMEOUT_S
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method and event.get("sessionId") == self.session:
                return event

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in reply:
            raise RuntimeError(f"the page could not evaluate the measurement: {reply['exceptionDetails']}")
        return reply["result"]["value"]

    def open_page(self) -> None:
        """Attach to the start page and enable the domains whose events the test reads."""
        targets = self.send("Target.getTargets", browser=True)["targetInfos"]
        page = next((t for t in targets if t["type"] == "page"), None)
        target_id = page["targetId"] if page else self.send(
            "Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target_id, "flatten": True},
                                 browser=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", {"width": VIEWPORT_WIDTH, "height": VIEWPORT_HEIGHT,
                                                         "deviceScaleFactor": 1, "mobile": False})

    def close(self) -> None:
        try:
            self.send("Browser.close", browser=True)
        except (OSError, TimeoutError, ConnectionError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)


def _problems(events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(console errors and uncaught exceptions, requests to anything but the local file) from events."""
    errors, requests = [], []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            errors.append(json.dumps(params.get("exceptionDetails", {}))[:300])
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            errors.append(json.dumps(params.get("args", []))[:300])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            errors.append(params["entry"].get("text", "")[:300])
        elif method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url", "")
            if not url.startswith(_ALLOWED_SCHEMES):
                requests.append(url)
    return errors, requests


@pytest.fixture
def report_runs(request, tmp_path: Path) -> list[Path]:
    """The conftest's ``small_run`` (a real tiny run folder) where one exists, else fake runs of the contract."""
    try:
        return [Path(request.getfixturevalue("small_run"))]
    except pytest.FixtureLookupError:
        return [write_fake_run(tmp_path / "runs" / "rho0.1", rho=0.1),
                write_fake_run(tmp_path / "runs" / "rho0.4", rho=0.4, violated={"T4"})]


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.is_file():
        reason = (f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) "
                  "to run the browser test")
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)
    return CHROMIUM


def test_report_renders_in_headless_chromium(chromium: Path, report_runs: list[Path], tmp_path: Path) -> None:
    report = build.build_report(report_runs, tmp_path / "report.html")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    browser = Browser(profile)
    try:
        browser.open_page()
        browser.send("Page.navigate", {"url": report.resolve().as_uri()})
        browser.wait_for("Page.loadEventFired")
        height = browser.evaluate(_MEASURE)["height"]
        # A window as tall as the page, so that everything is laid out and painted in one shot.
        browser.send("Emulation.setDeviceMetricsOverride", {"width": VIEWPORT_WIDTH, "height": height,
                                                             "deviceScaleFactor": 1, "mobile": False})
        page = browser.evaluate(_MEASURE)
        shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"})["data"])
    finally:
        browser.close()
        shutil.rmtree(profile, ignore_errors=True)
    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(shot)
    pixels = matplotlib.image.imread(io.BytesIO(shot), format="png")[..., :3]

    errors, requests = _problems(browser.events)
    assert errors == [], f"console errors: {errors}"
    assert requests == [], f"the report fetched: {requests}"
    assert page["scripts"] == 0
    assert page["title"].startswith("SAST theory-alignment report")
    assert page["figures"], "no figure rendered"
    for fig in page["figures"]:
        assert fig["width"] > 0 and fig["height"] > 0, f"figure {fig['label']!r} has no rendered size"
        assert fig["texts"] > 0, f"figure {fig['label']!r} has no text"
        assert fig["width"] <= VIEWPORT_WIDTH, f"figure {fig['label']!r} is wider than the window"
        top, left = round(fig["top"]), round(fig["left"])
        box = pixels[top:top + round(fig["height"]), left:left + round(fig["width"])]
        ink = float((box.min(axis=-1) < INK_LEVEL).mean())
        assert ink > MIN_INK_FRACTION, f"figure {fig['label']!r} is blank in the screenshot ({ink:.4f} ink)"
    assert page["width"] <= VIEWPORT_WIDTH, "the page scrolls sideways"
    assert len(page["tables"]) == len(report_runs)
    for rows in page["tables"]:  # a row per statement, in order (a run may check more, e.g. T1)
        assert [sid for sid in rows if sid in VERDICT_IDS] == list(VERDICT_IDS)
        assert len(rows) == len(set(rows))
    assert SCREENSHOT.stat().st_size > 0
