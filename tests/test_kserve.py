"""The KServe deployment the MLServer export writes, checked on paper: both manifests
against the KServe API's fields (``tests/fixtures/kserve/kserve_0.21.0.schema.json``,
derived from KServe's SDK, which says how), the references between them, and the
container recipe against the code the MLServer runtime imports."""
import ast
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from contract import layout
from f07_validation import mlserver_export
from f07_validation.mlserver_export import export_repository
from tests.conftest import PROJECT

SCHEMA = json.loads((PROJECT / "tests/fixtures/kserve/kserve_0.21.0.schema.json").read_text())
KINDS = {"InferenceService": "V1beta1InferenceService", "ServingRuntime": "V1alpha1ServingRuntime"}


def validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{KINDS[kind]}", "$defs": SCHEMA["$defs"]})


@pytest.fixture(scope="module")
def repository(serving_manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("kserve") / "repo"
    manifest = json.loads(serving_manifest.read_text())
    package = (serving_manifest.parent / manifest["package_dir"]).resolve()
    return export_repository(manifest, package, out, image="f06-mlserver:1",
                             storage_uri="s3://bucket/f06/repo")


def documents(repository):
    return (yaml.safe_load((repository / layout.KSERVE_SERVING_RUNTIME).read_text()),
            yaml.safe_load((repository / layout.KSERVE_INFERENCE_SERVICE).read_text()))


def test_the_manifests_hold_only_kserve_fields_of_the_right_types(repository):
    for document in documents(repository):
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator(document["kind"]).iter_errors(document)]
        assert errors == [], document["kind"]


@pytest.mark.parametrize("path, value, complaint", [
    (("spec", "predictor", "model", "storageURI"), "s3://x", "Additional properties"),  # misspelt
    (("spec", "predictor", "model", "protocolVersion"), "v3", "is not one of"),
    (("spec", "predictor", "model", "resources", "requests", "memory"), "2 GB", "is not valid"),
    (("metadata", "name"), "F06_v601", "does not match"),
])
def test_the_schema_refuses_what_kserve_would(repository, path, value, complaint):
    service = documents(repository)[1]
    holder = service
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    errors = [e.message for e in validator("InferenceService").iter_errors(service)]
    assert any(complaint in message for message in errors), errors


def test_the_service_runs_mlserver_on_the_repository_ready_on_the_oip_probe(repository):
    runtime, service = documents(repository)
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"] in [{k: f[k] for k in ("name", "version")} for f in runtime["spec"]["supportedModelFormats"]]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"] and model["protocolVersion"] == "v2"
    assert model["storageUri"] == "s3://bucket/f06/repo"
    [container] = runtime["spec"]["containers"]
    assert container["image"] == "f06-mlserver:1"
    assert container["args"] == ["mlserver", "start", mlserver_export.KSERVE_STORAGE_ROOT]
    http_port = int({e["name"]: e["value"] for e in container["env"]}["MLSERVER_HTTP_PORT"])
    assert [p["containerPort"] for p in container["ports"]] == [http_port]
    for probe in (model["readinessProbe"], container["readinessProbe"]):
        assert probe["httpGet"] == {"path": "/v2/health/ready", "port": http_port}
    for resources in (model["resources"], container["resources"]):
        assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def _project_imports(module: Path, seen: set) -> set[str]:
    """The project's top-level packages ``module`` imports, transitively."""
    packages = set()
    for node in ast.walk(ast.parse(module.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        for name in names:
            parts = name.split(".")
            if not (PROJECT / parts[0]).is_dir():
                continue
            packages.add(parts[0])
            for candidate in (PROJECT.joinpath(*parts).with_suffix(".py"), PROJECT.joinpath(*parts, "__init__.py")):
                if candidate.is_file() and candidate not in seen:
                    seen.add(candidate)
                    packages |= _project_imports(candidate, seen)
    return packages


def test_the_container_recipe_copies_what_the_mlserver_runtime_imports(repository):
    recipe = (repository / layout.CONTAINERFILE).read_text()
    copied = [line.split()[1:-1] for line in recipe.splitlines() if line.startswith("COPY ")]
    sources = [source.rstrip("/") for sources in copied for source in sources]
    assert all((PROJECT / source).exists() for source in sources), sources
    needed = _project_imports(PROJECT / "runtime" / "mlserver_model.py", set())
    assert needed == set(mlserver_export.SERVING_CODE) and needed <= set(sources)
    assert set(mlserver_export.REQUIREMENTS) <= set(sources)
    assert f'CMD ["mlserver", "start", "{mlserver_export.KSERVE_STORAGE_ROOT}"]' in recipe
