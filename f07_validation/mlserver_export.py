"""Export a sealed package as an MLServer model repository, with its KServe deployment.

    python -m f07_validation.mlserver_export --package executions/06_packaging/v601 \
        --out deploy/v601
    mlserver start deploy/v601            # with this project on PYTHONPATH

The repository (``contract.layout``'s MLSERVER_* names):

- ``manifest.json``: the package's manifest, as F07's serve stage builds it, whose
  ``package_dir`` is ``package``: a symlink to the package, referenced, never copied
  (``cp -rL`` or ``tar -h`` makes the folder self-contained for a storage bucket);
- ``settings.json``: MLServer's server settings (one inference worker, no debug);
- ``<name>/model-settings.json`` per packaged model, ``<name>`` as our ``GET /v2/models``
  names it, served by ``runtime.mlserver_model.SealedPackageModel`` (which verifies the
  seal and loads the verified bytes), its version the package digest;
- ``kserve/servingruntime.yaml`` and ``kserve/inferenceservice.yaml``: a KServe
  ``ServingRuntime`` running MLServer on this project's image and an ``InferenceService``
  whose storage URI is this repository, readiness on ``/v2/health/ready``, resources
  stated (``kserve_manifests``);
- ``Containerfile``: the image that ServingRuntime runs (the minimal runtime, MLServer and
  the project's serving code), built from the project's root.

The package's seal is verified before anything is written; a package that does not
verify is refused naming its problems.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

import yaml

from contract import layout
from contract.defaults import DEFAULT_BATCH_SIZE, MLSERVER_GRPC_PORT, MLSERVER_HTTP_PORT
from contract.errors import UserError
from contract.files import dump_json, write_text_atomic
from contract.manifest import ModelEntry, load_manifest
from contract.seal import verify_seal
from f07_validation.serve import build_manifest
from runtime import codecs
from runtime.core import oip_name
from runtime.oip_api import PLATFORM
from runtime.mlserver_model import IMPLEMENTATION

KSERVE_STORAGE_ROOT = "/mnt/models"   # where KServe's storage initializer puts storageUri
PROJECT_IN_IMAGE = "/opt/project"
MODEL_FORMAT = "f06-sealed-package"
# The project's folders the MLServer runtime imports (runtime.mlserver_model and what it
# imports: tests/test_mlserver.py checks this list against the imports).
SERVING_CODE = ("contract", "console", "runtime")
REQUIREMENTS = ("requirements-runtime.txt", "requirements-mlserver.txt")
# Stated, not measured here: three upstream-sized models load in ~1.2 GB (README,
# "At upstream scale"); two cores serve them (bench/bench_runtime.py).
RESOURCES = {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "3Gi"}}


class ExportError(UserError):
    """A package that cannot be exported as it is; the message names the problem."""


def model_settings(entry: ModelEntry, digest: str) -> dict:
    """One packaged model's ``model-settings.json``."""
    return {
        "name": oip_name(entry),
        "implementation": IMPLEMENTATION,
        "platform": PLATFORM,
        "versions": [digest],
        "inputs": [codecs.OIP_INPUT],
        "outputs": list(codecs.OIP_OUTPUTS),
        "parameters": {"uri": f"../{layout.MANIFEST}", "version": digest,
                       "extra": {"model": entry.key}},
    }


def resource_name(text: str) -> str:
    """A Kubernetes name (DNS-1035 label): lower case, digits and '-', starting with a letter."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return ("f06-" + name)[:63].rstrip("-")


def kserve_manifests(name: str, image: str, storage_uri: str) -> tuple[dict, dict]:
    """(ServingRuntime, InferenceService): MLServer on ``image`` serving the model
    repository KServe fetches from ``storage_uri``."""
    probe = {"httpGet": {"path": "/v2/health/ready", "port": MLSERVER_HTTP_PORT},
             "initialDelaySeconds": 5, "periodSeconds": 5, "failureThreshold": 60}
    runtime = {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": f"{name}-mlserver"},
        "spec": {
            "supportedModelFormats": [{"name": MODEL_FORMAT, "version": "1", "autoSelect": True}],
            "protocolVersions": ["v2"],
            "containers": [{
                "name": "kserve-container",
                "image": image,
                "args": ["mlserver", "start", KSERVE_STORAGE_ROOT],
                "env": [{"name": "PYTHONPATH", "value": PROJECT_IN_IMAGE},
                        {"name": "MLSERVER_HTTP_PORT", "value": str(MLSERVER_HTTP_PORT)},
                        {"name": "MLSERVER_GRPC_PORT", "value": str(MLSERVER_GRPC_PORT)}],
                "ports": [{"containerPort": MLSERVER_HTTP_PORT, "protocol": "TCP"}],
                "resources": RESOURCES,
                "readinessProbe": probe,
            }],
        },
    }
    service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"model": {
            "modelFormat": {"name": MODEL_FORMAT, "version": "1"},
            "runtime": f"{name}-mlserver",
            "protocolVersion": "v2",
            "storageUri": storage_uri,
            "resources": RESOURCES,
            "readinessProbe": probe,
        }}},
    }
    return runtime, service


def containerfile() -> str:
    """The image the ServingRuntime runs, built from the project's root."""
    copies = "".join(f"COPY {folder}/ {folder}/\n" for folder in SERVING_CODE)
    return (
        "# The MLServer image for a sealed package's model repository (kserve/*.yaml), built\n"
        "# from the project's root: docker build -f <repository>/Containerfile -t <image> .\n"
        "# The model repository itself is not in the image: KServe mounts it at "
        f"{KSERVE_STORAGE_ROOT}.\n"
        "FROM python:3.11-slim\n"
        f"WORKDIR {PROJECT_IN_IMAGE}\n"
        f"COPY {' '.join(REQUIREMENTS)} ./\n"
        f"RUN pip install --no-cache-dir {' '.join(f'-r {r}' for r in REQUIREMENTS)}\n"
        f"{copies}"
        f"ENV PYTHONPATH={PROJECT_IN_IMAGE}\n"
        f"EXPOSE {MLSERVER_HTTP_PORT} {MLSERVER_GRPC_PORT}\n"
        f'CMD ["mlserver", "start", "{KSERVE_STORAGE_ROOT}"]\n')


def export_repository(manifest: dict, package_dir: Path, out: Path, *, image: str | None = None,
                      storage_uri: str | None = None) -> Path:
    """Write the model repository of ``manifest`` (a manifest's JSON, its paths relative
    to the package) into ``out``, replacing what an earlier export wrote there."""
    package_dir, out = Path(package_dir).resolve(), Path(out)
    check = verify_seal(package_dir)
    if not check.ok:
        raise ExportError(f"refusing to export {package_dir}: {check.describe()}")
    if check.digest != manifest["package_digest"]:
        raise ExportError(f"refusing to export {package_dir}: its seal digest is {check.digest}, "
                          f"the manifest was made for {manifest['package_digest']}")
    digest = manifest["package_digest"]
    out.mkdir(parents=True, exist_ok=True)
    link = out / layout.MLSERVER_PACKAGE_LINK
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(os.path.relpath(package_dir, out.resolve()), link)
    write_text_atomic(out / layout.MANIFEST,
                      dump_json({**manifest, "package_dir": layout.MLSERVER_PACKAGE_LINK}))
    write_text_atomic(out / layout.MLSERVER_SETTINGS, dump_json(
        {"debug": False, "parallel_workers": 0, "server_name": "f07-mlserver",
         "load_models_at_startup": True}))
    names = set()
    for entry in load_manifest(out / layout.MANIFEST).models:
        settings = model_settings(entry, digest)
        names.add(settings["name"])
        folder = out / settings["name"]
        folder.mkdir(exist_ok=True)
        write_text_atomic(folder / layout.MLSERVER_MODEL_SETTINGS, dump_json(settings))
    for stale in out.iterdir():  # a model folder of an earlier export of another package
        if (stale / layout.MLSERVER_MODEL_SETTINGS).is_file() and stale.name not in names:
            shutil.rmtree(stale)
    name = resource_name(f"{manifest['parent_variant_f06']}-{digest[:8]}")
    runtime, service = kserve_manifests(
        name, image or f"{name}-mlserver:latest", storage_uri or f"pvc://f06-packages/{out.name}")
    (out / layout.KSERVE_DIR).mkdir(exist_ok=True)
    write_text_atomic(out / layout.KSERVE_SERVING_RUNTIME, yaml.safe_dump(runtime, sort_keys=False))
    write_text_atomic(out / layout.KSERVE_INFERENCE_SERVICE, yaml.safe_dump(service, sort_keys=False))
    write_text_atomic(out / layout.CONTAINERFILE, containerfile())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m f07_validation.mlserver_export",
                                     description="Export a sealed F06 package as an MLServer model "
                                                 "repository, with its KServe manifests.")
    parser.add_argument("--package", required=True, help="the sealed package (executions/06_packaging/<v>)")
    parser.add_argument("--out", required=True, help="the repository folder to write")
    parser.add_argument("--image", help="the container image KServe runs (default <name>-mlserver:latest)")
    parser.add_argument("--storage-uri", help="where KServe fetches the repository from "
                                              "(default pvc://f06-packages/<out folder name>)")
    args = parser.parse_args(argv)
    package, out = Path(args.package), Path(args.out)
    try:
        metadata = json.loads((package / layout.PACKAGE_METADATA).read_text(encoding="utf-8"))
        manifest = build_manifest(metadata["variant"], package, package, DEFAULT_BATCH_SIZE)
    except (OSError, ValueError, KeyError) as error:
        print(f"mlserver_export: {package} is not a sealed package ({error!r}); build it with "
              "`dvc repro` first", file=sys.stderr)
        return 2
    try:
        export_repository(manifest, package, out, image=args.image, storage_uri=args.storage_uri)
    except UserError as error:
        print(f"mlserver_export: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {len(manifest['models'])} models; serve it with `mlserver start {out}`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
