"""Where an F07 run finds the server it judges: one it starts itself on the package, or a
deployment that already runs elsewhere, given by URL.

``deployrun.<v>.runtime`` says which. With ``host``/``port`` (and optionally ``server:
gunicorn``, ``workers``, ``expose``, ``token_env``, ``access_log``) F07 starts
``python -m runtime.server`` as its own process and stops it afterwards. With ``url`` it
starts nothing: it verifies the package's seal here, then requires the deployment to be
ready and to serve exactly this package — the ``package_digest`` in its ``GET /models``
must equal the package's, else the run is refused naming both — and the replay, scoring
and verdict go on exactly as for a local server. A token (``token_env``) is read from the
environment and sent as ``Authorization: Bearer``, to the local server and the deployment
alike.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import requests

from contract.manifest import Manifest
from contract.seal import verify_seal
from f07_validation.client import ServerProcess
from f07_validation.deployrun import DeployRunError

# runtime.<key> -> the server's command-line flag (host and port are ServerProcess's own)
_SERVER_FLAGS = {"server": "--server", "workers": "--workers", "token_env": "--token-env"}
_SERVER_SWITCHES = {"expose": "--expose", "access_log": "--access-log"}


@dataclass(frozen=True)
class Endpoint:
    url: str
    token: str | None
    server: ServerProcess | None  # the process this run started; None for a deployment by URL
    ready: dict                   # its GET /ready answer


def server_args(runtime: dict) -> list[str]:
    """The ``runtime.server`` flags for a local server run as ``runtime`` says."""
    args = []
    for key, flag in _SERVER_FLAGS.items():
        if runtime.get(key) is not None:
            args += [flag, str(runtime[key])]
    args += [flag for key, flag in _SERVER_SWITCHES.items() if runtime.get(key)]
    return args


def _token(runtime: dict, where: str) -> str | None:
    name = runtime.get("token_env")
    if not name:
        return None
    token = os.environ.get(name, "")
    if not token:
        raise DeployRunError(f"{where}.runtime.token_env names the environment variable {name}, "
                             "but it is unset or empty; export the server's token in it")
    return token


def _get(session: requests.Session, url: str, path: str, where: str) -> requests.Response:
    try:
        return session.get(url + path, timeout=30)
    except requests.RequestException as error:
        raise DeployRunError(f"{where}.runtime.url: cannot reach {url}{path} ({error}); is the "
                             "deployment running, and is the URL right?") from None


def check_deployment(url: str, manifest: Manifest, token: str | None, where: str) -> dict:
    """Require the deployment at ``url`` to be ready and to serve this very package;
    returns its ``/ready`` answer."""
    check = verify_seal(manifest.package_dir)
    if not check.ok:
        raise DeployRunError(f"{where}: {check.describe()}")
    with requests.Session() as session:
        session.trust_env = False
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        ready = _get(session, url, "/ready", where)
        if ready.status_code != 200:
            raise DeployRunError(f"{where}.runtime.url: the deployment at {url} is not ready "
                                 f"(GET /ready answered {ready.status_code}: {ready.text[:300]})")
        described = _get(session, url, "/models", where)
        if described.status_code != 200:
            raise DeployRunError(f"{where}.runtime.url: GET {url}/models answered "
                                 f"{described.status_code}: {described.text[:300]}")
        served = described.json().get("package_digest")
    if served != manifest.package_digest:
        raise DeployRunError(
            f"{where}.runtime.url: the deployment at {url} serves package digest {served}, but "
            f"package {manifest.parent_variant_f06} has digest {manifest.package_digest}; point "
            "runtime.url at a deployment of this package (or deploy this package there)")
    return ready.json()


@contextlib.contextmanager
def open_endpoint(manifest: Manifest, runtime: dict, where: str) -> Iterator[Endpoint]:
    """The server to judge: started here (and stopped on the way out), or checked at its
    URL. ``where`` names the variant's params key in messages (``deployrun.v701``)."""
    token = _token(runtime, where)
    if runtime.get("url"):
        url = runtime["url"].rstrip("/")
        yield Endpoint(url, token, server=None, ready=check_deployment(url, manifest, token, where))
        return
    with ServerProcess(manifest.path, host=runtime["host"], port=runtime["port"],
                       server_args=server_args(runtime)) as server:
        yield Endpoint(server.url, token, server=server, ready=server.wait_ready())
