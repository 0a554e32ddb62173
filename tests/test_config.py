"""params.yaml is checked whole, against one declared schema, before any stage or lifecycle
command does any work; an error the user can fix is one line and exit 1, a bug keeps its
traceback."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from builders.packages import ModelDef, build_served_package
from contract.config import SCHEMA, ConfigError, config_errors, validate_params
from contract.defaults import MAX_BATCH_ITEMS
from contract.errors import UserError, run_variant_command
from contract.manifest import load_manifest
from f07_validation.client import InferenceClient, ServerProcess
from tests.conftest import PROJECT, project_env

PARAMS = yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))


def with_change(change) -> dict:
    params = copy.deepcopy(PARAMS)
    change(params)
    return params


def test_the_project_params_follow_the_schema():
    assert config_errors(PARAMS) == []


@pytest.mark.parametrize("change, message", [
    (lambda p: p["deployrun"]["v701"].update(runtime={"host": "127.0.0.1", "prot": 6001}),
     "deployrun.v701.runtime.prot: unknown key; known: access_log, expose, host, port, "),
    (lambda p: p["deployrun"]["v701"].update(runtime="x"), "deployrun.v701.runtime: must be object or null, got 'x'"),
    (lambda p: p["deployrun"]["v701"].update(parent_variant_f06="../../../elsewhere/v601"),
     "deployrun.v701.parent_variant_f06: '../../../elsewhere/v601' is not a variant id"),
    (lambda p: p["deployrun"].update({"../v709": p["deployrun"]["v701"]}), "deployrun: '../v709' is not a variant id"),
    (lambda p: p["packaging"]["v601"]["replay"]["source"].update(dataset_id="v201/../../x"),
     "packaging.v601.replay.source.dataset_id: 'v201/../../x' is not a variant id"),
    (lambda p: p["packaging"]["v601"]["models"]["v401"][0].update(model_id="../../etc"),
     "packaging.v601.models.v401[0].model_id: '../../etc' must be a name"),
    (lambda p: p["deployrun"]["v701"].update(batch_size=MAX_BATCH_ITEMS + 1),
     f"deployrun.v701.batch_size: {MAX_BATCH_ITEMS + 1} is out of range (maximum {MAX_BATCH_ITEMS})"),
    (lambda p: p["deployrun"]["v701"].update(batch_size="256"), "deployrun.v701.batch_size: must be integer, got '256'"),
    # YAML's 256.0 is a float; it passed here and was refused inside serve, naming .manifest.json.pending
    (lambda p: p["deployrun"]["v701"].update(batch_size=256.0), "deployrun.v701.batch_size: must be integer, got 256.0"),
    (lambda p: p["deployrun"]["v701"].update(check_equivalence="yes"),
     "deployrun.v701.check_equivalence: must be boolean, got 'yes'"),
    (lambda p: p["deployrun"]["v701"].update(equivalence_sample_windows=0),
     "deployrun.v701.equivalence_sample_windows: 0 is out of range (minimum 1)"),
    (lambda p: p["deployrun"]["v701"].update(log_csv_compression="bz2"),
     "deployrun.v701.log_csv_compression: 'bz2' is not allowed; use one of: none, gzip; the CSV copy of the "
     "prediction log is written as logs/raw_predictions.csv (none), logs/raw_predictions.csv.gz (gzip)"),
    (lambda p: p["packaging"]["v601"]["temporal"].update(OW="six"),
     "packaging.v601.temporal.OW: must be integer or null, got 'six'"),
    (lambda p: p["packaging"]["v601"]["replay"]["time_range"].update(stop=5),
     "packaging.v601.replay.time_range.stop: unknown key; known: end, start"),
    (lambda p: p["packaging"]["v601"].pop("replay"), "packaging.v601: 'replay' is missing"),
    (lambda p: p["deployrun"]["v701"].update(gates={"min": {"recall": "high"}}),
     "deployrun.v701.gates.min.recall: must be number or null, got 'high'"),
    (lambda p: p["deployrun"]["v701"].update(reference={"sample": 10}),
     "deployrun.v701.reference.sample: unknown key; known: sample_windows, tolerance"),
])
def test_a_wrong_key_or_type_is_named_with_its_path(change, message):
    with pytest.raises(ConfigError) as error:
        validate_params(with_change(change))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_every_problem_is_reported_at_once():
    params = with_change(lambda p: (p["deployrun"]["v701"].update(batch_size=0),
                                    p["packaging"]["v601"].update(colour="blue")))
    problems = config_errors(params)
    assert [p.split(":")[0] for p in problems] == ["deployrun.v701.batch_size", "packaging.v601.colour"]


def test_every_nested_mapping_is_closed():
    """No mapping of the schema accepts a key it does not declare (a typo is never ignored)."""
    open_mappings = []

    def walk(node, where):
        if isinstance(node, dict):
            if "object" in (node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]):
                extra = node.get("additionalProperties")
                if extra is not False and not (isinstance(extra, dict) and "propertyNames" in node) \
                        and node.get("description") != "metric name (as in metrics_per_model.csv) -> bound (null: the gate is off)" \
                        and not (isinstance(extra, dict) and extra.get("type") == "array"):
                    open_mappings.append(where)
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    walk(SCHEMA["properties"], "params")
    assert open_mappings == []


def test_the_batch_limit_is_the_one_a_real_server_enforces(tmp_path):
    manifest = build_served_package(tmp_path, [ModelDef("m", "dense_bow", "v401", "v501", vocab=[1, 2, 3])])
    with ServerProcess(manifest) as server, InferenceClient(server.url, load_manifest(manifest)) as client:
        assert client.models()["limits"]["max_batch_items"] == MAX_BATCH_ITEMS


def stage(root: Path, name: str, variant: str) -> subprocess.CompletedProcess:
    env = {**project_env(), "PYTHONPATH": str(PROJECT)}
    return subprocess.run([sys.executable, "-m", f"stages.{name}", variant], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_stage_refuses_a_wrong_key_in_one_line_before_any_work(tmp_path):
    """serve@v701 with `runtime.prot`: exit 1, one line naming the key, nothing written
    (the package it names does not even exist: the check comes first)."""
    params = with_change(lambda p: p["deployrun"]["v701"].update(runtime={"host": "127.0.0.1", "prot": 6001}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    result = stage(tmp_path, "serve", "v701")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: params.yaml: deployrun.v701.runtime.prot: unknown key; known: access_log, "
                           "expose, host, port, ")
    assert not (tmp_path / "executions").exists()


def test_serve_and_infer_refuse_a_run_params_yaml_that_is_not_params_yamls_entry(tmp_path, monkeypatch):
    """DVC tracks serve's and infer's parameters in the run's params.yaml (the settings
    stage's): run on a missing or stale one (`dvc repro -f -s`, or by hand), they would use
    other values than DVC records, so they refuse, naming the settings stage."""
    from f07_validation import steps
    from f07_validation.deployrun import DeployRunError

    monkeypatch.chdir(tmp_path)
    params = with_change(lambda p: p["deployrun"]["v701"].pop("log_csv_compression"))  # optional: its default
    Path("params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    for step in (steps.serve, steps.infer):
        with pytest.raises(DeployRunError) as refused:
            step("v701")
        assert str(refused.value) == (
            "executions/07_deployrun/v701/params.yaml is missing: it holds deployrun.v701 as serve, infer and "
            "reference use it (DVC tracks their parameters there); run `dvc repro settings@v701` first "
            "(`dvc repro` without -s does)")
    assert "log_csv_compression: none\n" in steps.settings("v701").read_text()  # written out, with its default
    params["deployrun"]["v701"]["batch_size"] = 64
    Path("params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    with pytest.raises(DeployRunError, match=r"params.yaml was written before params.yaml's last edit: .*"
                                              r"`dvc repro settings@v701`"):
        steps.infer("v701")


def test_a_user_error_is_one_line_and_any_other_exception_keeps_its_traceback(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["stage", "v701"])

    def refused(variant):
        raise UserError(f"deployrun.{variant}.batch_size: too large")

    with pytest.raises(SystemExit) as exited:
        run_variant_command("a stage", refused)
    assert exited.value.code == 1 and capsys.readouterr().err == "error: deployrun.v701.batch_size: too large\n"

    def bug(variant):
        raise ValueError("a bug, not a configuration error")

    with pytest.raises(ValueError, match="a bug"):  # not swallowed into a one-line 'error:'
        run_variant_command("a stage", bug)
