"""MLServer as the server an F07 run starts (``runtime: {server: mlserver}``): the package
exported as a model repository (``f07_validation.mlserver_export``) into a private
temporary folder, ``mlserver start`` on it as a real process on a free port, stopped
after, exactly as ``ServerProcess`` runs ours (it is one, with another command).

MLServer has no port 0: the HTTP port is ``runtime.port`` or, for 0, one the system
gave a probe socket and took back just before the start; its gRPC and metrics ports are
picked the same way (a port taken in between makes MLServer exit, reported with its
stderr). It does not watch its parent as ours does, so the kernel stops it when the
process that started it dies (``PR_SET_PDEATHSIG``), even by SIGKILL.
"""
from __future__ import annotations

import ctypes
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from contract.manifest import Manifest
from f07_validation.client import ServerProcess, ServerStartError
from f07_validation.mlserver_export import export_repository
from f07_validation.oip_client import OipClient

_PR_SET_PDEATHSIG = 1


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host.strip("[]"), 0))
        return probe.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec. The kernel signals when the *thread* that started the
    child ends: F07 starts its servers from the main thread, which ends with the process."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class MLServerProcess(ServerProcess):
    """``with MLServerProcess(manifest) as server:`` MLServer serving the manifest's
    package on ``server.url``, ready (every model loaded), stopped on the way out."""

    before_exec = staticmethod(_die_with_parent)

    def __init__(self, manifest: Manifest, *, host: str, port: int = 0, start_timeout: float = 180.0):
        super().__init__(manifest.path, host=host, port=port or _free_port(host),
                         start_timeout=start_timeout)
        self.manifest = manifest
        self._repository = tempfile.TemporaryDirectory(prefix="f07-mlserver-")
        self.repository = Path(self._repository.name) / "repository"
        export_repository(json.loads(manifest.path.read_text(encoding="utf-8")), manifest.package_dir,
                          self.repository)
        self.url = f"http://{host}:{self.port}"

    def command(self) -> list[str]:
        return [str(Path(sys.executable).parent / "mlserver"), "start", str(self.repository)]

    def environment(self) -> dict:
        env = super().environment()
        env.update({"MLSERVER_HOST": self.host.strip("[]"), "MLSERVER_HTTP_PORT": str(self.port),
                    "MLSERVER_GRPC_PORT": str(_free_port(self.host)),
                    "MLSERVER_METRICS_PORT": str(_free_port(self.host))})
        return env

    def _read_stdout(self) -> None:
        for line in self.process.stdout:  # MLServer logs there, a failed model's reason too
            self._stderr_tail.append(line)
            self._notice(line)

    def listening_url(self, line: str) -> str | None:
        """uvicorn's start line, once MLServer's HTTP port is bound."""
        return self.url if "Uvicorn running on" in line and re.search(rf":{self.port}\b", line) else None

    def wait_ready(self, timeout: float | None = None) -> dict:
        """Poll ``GET /v2/health/ready`` until 200, then require every model of the package
        ready: MLServer drops a model whose ``load`` failed (a package that changed since
        its seal, say) and calls itself ready on the others. Raises if MLServer dies, a
        model is missing or the deadline passes; returns the readiness body."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        with OipClient(self.url, self.manifest, timeout=5) as client:
            while True:
                if self.process.poll() is not None:
                    raise ServerStartError(f"MLServer exited with code {self.process.returncode} "
                                           f"before it was ready:\n{self.stderr_tail()}")
                try:
                    status, body = client.ready()
                except requests.RequestException:
                    status, body = None, {}
                if status == 200:
                    if body["ready"]:
                        return body
                    failed = {key: model["state"] for key, model in body["models"].items()
                              if model["state"] != "ready"}
                    try:  # MLServer stops once it has logged why: let its reason reach the tail
                        self.process.wait(10)
                    except subprocess.TimeoutExpired:
                        pass
                    raise ServerStartError(f"MLServer is up without every model of the package: "
                                           f"{failed}\n{self.stderr_tail()}")
                if time.monotonic() > deadline:
                    raise ServerStartError(f"MLServer was not ready within {self.start_timeout} s:"
                                           f"\n{self.stderr_tail()}")
                time.sleep(0.25)

    def stop(self, timeout: float = 10.0) -> int | None:
        try:
            return super().stop(timeout)
        finally:
            self._repository.cleanup()
