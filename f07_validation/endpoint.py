"""Where an F07 run finds the server it judges: one it starts itself on the package, or a
deployment that already runs elsewhere, given by URL.

``deployrun.<v>.runtime`` says which. With ``host``/``port`` (and optionally ``server:
gunicorn``, ``workers``, ``expose``, ``token_env``, ``access_log``) F07 starts
``python -m runtime.server`` as its own process and stops it afterwards; with ``server:
mlserver`` it exports the package as an MLServer model repository and starts MLServer on
it (``f07_validation.mlserver_process``), spoken to over the Open Inference Protocol
(``f07_validation.oip_client``). With ``url`` it
starts nothing: it verifies the package's seal here, then requires the deployment to be
ready and to serve exactly this package — the ``package_digest`` in its ``GET /models``
must equal the package's, else the run is refused naming both (``server: mlserver`` with
a ``url``: a running MLServer, its models' metadata checked the same way) — and the
replay, scoring and verdict go on exactly as for a local server. A token (``token_env``) is read from the
environment and sent as ``Authorization: Bearer``, to the local server and the deployment
alike.
"""
from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

import requests

from contract.manifest import Manifest
from contract.seal import verify_seal
from f07_validation.client import OIP, ServerError, ServerProcess, open_client
from f07_validation.deployrun import DeployRunError
from runtime import codecs, optional

MLSERVER = "mlserver"  # runtime.server: MLServer on the exported package (mlserver_process)
# runtime.<key> -> the server's command-line flag (host and port are ServerProcess's own)
_SERVER_FLAGS = {"server": "--server", "workers": "--workers", "token_env": "--token-env"}
_SERVER_SWITCHES = {"expose": "--expose", "access_log": "--access-log"}


@dataclass(frozen=True)
class Endpoint:
    url: str
    token: str | None
    server: ServerProcess | None  # the process this run started; None for a deployment by URL
    ready: dict                   # its GET /ready answer
    wire: str = codecs.ARROW      # how the client speaks to it (client.open_client)


def wire_of(runtime: dict) -> str:
    """MLServer speaks only the Open Inference Protocol; our server, Arrow on /infer_batch."""
    return OIP if runtime.get("server") == MLSERVER else codecs.ARROW


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


def check_deployment(url: str, manifest: Manifest, token: str | None, where: str,
                     wire: str = codecs.ARROW) -> dict:
    """Require the deployment at ``url`` to be ready and to serve this very package;
    returns its readiness answer (``GET /ready``, or its OIP equivalent)."""
    check = verify_seal(manifest.package_dir)
    if not check.ok:
        raise DeployRunError(f"{where}: {check.describe()}")
    with open_client(url, manifest, token=token, wire=wire, timeout=30) as client:
        try:
            status, ready = client.ready()
            if status != 200 or not ready.get("ready"):
                raise DeployRunError(f"{where}.runtime.url: the deployment at {url} is not ready "
                                     f"(it answered {status}: {json.dumps(ready)[:300]})")
            served = client.models().get("package_digest")
        except requests.RequestException as error:
            raise DeployRunError(f"{where}.runtime.url: cannot reach {url} ({error}); is the "
                                 "deployment running, and is the URL right?") from None
        except ServerError as error:
            raise DeployRunError(f"{where}.runtime.url: {error}") from None
    if served != manifest.package_digest:
        raise DeployRunError(
            f"{where}.runtime.url: the deployment at {url} serves package digest {served}, but "
            f"package {manifest.parent_variant_f06} has digest {manifest.package_digest}; point "
            "runtime.url at a deployment of this package (or deploy this package there)")
    return ready


@contextlib.contextmanager
def open_endpoint(manifest: Manifest, runtime: dict, where: str) -> Iterator[Endpoint]:
    """The server to judge: started here (and stopped on the way out), or checked at its
    URL. ``where`` names the variant's params key in messages (``deployrun.v701``)."""
    token = _token(runtime, where)
    wire = wire_of(runtime)
    if runtime.get("url"):
        url = runtime["url"].rstrip("/")
        yield Endpoint(url, token, server=None, wire=wire,
                       ready=check_deployment(url, manifest, token, where, wire))
        return
    if runtime.get("server") == MLSERVER:
        try:
            optional.require_installed("mlserver")
        except optional.MissingPackage as error:
            raise DeployRunError(f"{where}.runtime.server: {error}") from None
        from f07_validation.mlserver_process import MLServerProcess  # mlserver: an optional extra

        unsupported = sorted(key for key in ("workers", "token_env", "expose", "access_log") if runtime.get(key))
        if unsupported:
            raise DeployRunError(f"{where}.runtime: {unsupported} are settings of our server; "
                                 "MLServer (server: mlserver) takes none of them: remove them")
        with MLServerProcess(manifest, host=runtime["host"], port=runtime["port"]) as server:
            yield Endpoint(server.url, token, server=server, ready=server.wait_ready(), wire=wire)
        return
    with ServerProcess(manifest.path, host=runtime["host"], port=runtime["port"],
                       server_args=server_args(runtime)) as server:
        yield Endpoint(server.url, token, server=server, ready=server.wait_ready())
