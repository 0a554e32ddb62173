"""Open a local page in headless Chromium and tell what a reader would see go wrong:
console errors, uncaught exceptions, resources that failed to load, images that did not
decode; plus a full-page screenshot.

Driven through the DevTools protocol over a pipe (`--remote-debugging-pipe`: JSON
messages ending in NUL, read by Chromium on fd 3 and written on fd 4), so it needs no
websocket library and no port. Chromium's stderr log (`--enable-logging=stderr`) is not
enough: it prints console.log and console.error alike and omits failed loads.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Debian's package installs `chromium`, other distributions `chromium-browser`.
CHROMIUM = Path(shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]
VIEWPORT = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
IMAGES = ("JSON.stringify(Array.from(document.images).map(function (i) {"
          " return {alt: i.alt, complete: i.complete, width: i.naturalWidth}; }))")


@dataclass(frozen=True)
class PageReport:
    errors: list[str]  # console errors, uncaught exceptions, failed loads
    images: list[dict]  # {"alt", "complete", "width"} per <img>, width = naturalWidth
    values: dict[str, object]  # the caller's expressions, evaluated after the load event
    screenshot: bytes  # PNG of the whole page


class _Pipe:
    """One DevTools session over the two pipes."""

    def __init__(self, write_fd: int, read_fd: int, deadline: float):
        self.write_fd, self.read_fd, self.deadline = write_fd, read_fd, deadline
        self.buffer, self.next_id, self.events = b"", 0, []

    def _message(self) -> dict:
        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.read_fd], [], [], max(0.0, self.deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the DevTools pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        request = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        os.write(self.write_fd, json.dumps(request).encode() + b"\0")
        while True:
            message = self._message()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, method: str) -> None:
        while not any(event.get("method") == method for event in self.events):
            self.events.append(self._message())


def _errors(events: list[dict]) -> list[str]:
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(" ".join(str(arg.get("value", arg.get("description"))) for arg in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            errors.append(f"{entry['text']} {entry.get('url', '')}".strip())
    return errors


def open_page(page: Path, expressions: dict[str, str] | None = None, timeout: float = 60) -> PageReport:
    """Load `page` (a local file), wait for its load event, evaluate `expressions`
    (name -> JavaScript expression, JSON-serialisable result) and take a screenshot."""
    to_chrome, from_chrome = os.pipe(), os.pipe()

    def child_fds():  # in the child, before exec: its ends of the pipes become fds 3 and 4
        reads = fcntl.fcntl(to_chrome[0], fcntl.F_DUPFD, 10)
        writes = fcntl.fcntl(from_chrome[1], fcntl.F_DUPFD, 10)
        os.dup2(reads, 3)
        os.dup2(writes, 4)

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    process = subprocess.Popen([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                               preexec_fn=child_fds, close_fds=False, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_chrome[0])
    os.close(from_chrome[1])
    pipe = _Pipe(to_chrome[1], from_chrome[0], time.monotonic() + timeout)
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call("Emulation.setDeviceMetricsOverride", VIEWPORT, session=session)
        pipe.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        pipe.wait_for("Page.loadEventFired")

        def evaluate(expression: str):
            result = pipe.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                               session=session)
            if "exceptionDetails" in result:
                raise RuntimeError(f"{expression}: {result['exceptionDetails']['text']}")
            return result["result"].get("value")

        images = json.loads(evaluate(IMAGES))
        values = {name: evaluate(expression) for name, expression in (expressions or {}).items()}
        size = pipe.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = pipe.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}},
            session=session)
        errors = _errors(pipe.events)
        try:
            pipe.call("Browser.close")
        except EOFError:  # it may close the pipe before it answers
            pass
        process.wait(timeout=30)
        return PageReport(errors, images, values, base64.b64decode(shot["data"]))
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(to_chrome[1])
        os.close(from_chrome[0])
        shutil.rmtree(profile, ignore_errors=True)
