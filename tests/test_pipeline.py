"""End to end: real DVC on the small demo, in a temporary git repo (see conftest.py)."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pyarrow.parquet as pq
import yaml

from contract import layout
from contract.defaults import DEFAULT_EQUIVALENCE_SAMPLE
from tests.conftest import commit_all, edit_params, project_env, run
from tests.validated_package import FAULTS

PACKAGE = "executions/06_packaging/v601"
DEPLOY = "executions/07_deployrun/v701"
F06_STAGES = ["select_models@v601", "materialize_replay@v601", "seal_package@v601"]


def dvc(root, *args, check=True):
    return run([sys.executable, "-m", "dvc", *args], root, check=check, timeout=900)


def lock(root, name="dvc.lock") -> dict:
    return yaml.safe_load((root / name).read_text())["stages"]


def test_repro_writes_the_upstream_in_the_contract_layout(demo_project):
    for path in ["executions/02_prepareeventsds/v201/02_prepareeventsds_dataset.parquet",
                 "executions/03_preparewindowsds/v301/03_preparewindowsds_dataset.parquet",
                 "executions/04_targetengineering/v401/04_targetengineering_dataset.parquet",
                 "executions/04_targetengineering/v402/04_targetengineering_dataset.parquet",
                 "executions/05_modeling/v501/models/battery_active_power_any-to-80_100/model.h5",
                 "executions/05_modeling/v502/models/battery_active_power_any-to-80_100/model_summary.json",
                 "executions/05_modeling/v503/models/grid_active_power_any-to-80_100/model.h5"]:
        assert (demo_project / path).is_file(), path


def test_repro_builds_the_package_with_every_artifact_of_the_seed(demo_project):
    package = demo_project / PACKAGE
    metadata = json.loads((package / "06_packaging_metadata.json").read_text())
    assert sorted(p.name for p in (package / "models").iterdir()) == ["v401", "v402"]
    assert sorted(p.name for p in (package / "models/v401").iterdir()) == [
        "v501__battery_active_power_any-to-80_100", "v502__battery_active_power_any-to-80_100"]
    assert (package / "replay/replay_events.parquet").is_file()
    assert (package / "params.yaml").is_file()
    assert set(metadata["datasets"]) == {"v401", "v402"}
    assert metadata["lineage"]["f02"] == "v201"
    assert metadata["replay"]["rows"] == pq.ParquetFile(package / "replay/replay_events.parquet").metadata.num_rows
    verified = run([sys.executable, "-m", "contract.seal", "verify", PACKAGE], demo_project)
    assert "seal verified" in verified.stdout


def test_repro_deploys_and_validates_v701(demo_project):
    deploy = demo_project / DEPLOY
    manifest = json.loads((deploy / "manifest.json").read_text())
    assert [m["source_f05"] for m in manifest["models"]] == ["v501", "v502", "v503"]
    predictions = pq.read_table(deploy / "logs/raw_predictions.parquet")
    summary = json.loads((deploy / "logs/run_summary.json").read_text())
    assert predictions.num_rows == summary["windows_sent"] * 3 == summary["rows_logged"]
    assert (deploy / "logs/raw_predictions.csv").is_file()
    equivalence = json.loads((deploy / "logs/equivalence.json").read_text())
    # the test-sized demo is shorter than the default equivalence sample: every window compared
    assert equivalence["passed"] and equivalence["stride_batches"] == 1
    assert equivalence["windows_compared"] == summary["windows_sent"] < DEFAULT_EQUIVALENCE_SAMPLE
    assert all(m["max_abs_diff"] <= 1e-6 for m in equivalence["models"].values())
    for path in ["metrics/metrics_per_model.csv", "report/report.html", "07_deployrun_metadata.json",
                 "report/figures/confusion_battery_active_power_any-to-80_100.png",
                 "report/figures/confusion_grid_active_power_any-to-80_100.png"]:
        assert (deploy / path).is_file(), path
    verdict = json.loads((deploy / "verdict.json").read_text())
    assert verdict["passed"] is True, verdict


def test_repro_validates_v711_on_mlserver_with_our_servers_answers(demo_project):
    """v711 is v701's package and batches on MLServer (runtime.server: mlserver): its
    verdict passes, and its log holds, window by window and model by model, the
    probabilities our server gave v701."""
    verdict = json.loads((demo_project / "executions/07_deployrun/v711/verdict.json").read_text())
    assert verdict["passed"] is True, [c for c in verdict["checks"] if c["passed"] is False]
    on_mlserver, on_ours = (pq.read_table(demo_project / run_dir / "logs/raw_predictions.parquet").to_pandas()
                            for run_dir in ("executions/07_deployrun/v711", DEPLOY))
    columns = ["t0", "objective", "source_f05", "model_id"]
    assert on_mlserver[columns].equals(on_ours[columns]) and len(on_ours) > 0
    assert (on_mlserver["probability"] - on_ours["probability"]).abs().max() <= 1e-6
    assert on_mlserver["y_pred"].equals(on_ours["y_pred"])


def test_metrics_show_lists_v701s_models(demo_project):
    shown = dvc(demo_project, "metrics", "show", "--json").stdout
    metrics = json.loads(shown)
    files = next(iter(metrics.values()))["data"]
    # a file per model named by its short key (the F05 variant of each model), three headline values each
    per_model = {path: file["data"] for path, file in files.items() if path.startswith(f"{DEPLOY}/metrics/window_level/")}
    assert sorted(per_model) == [f"{DEPLOY}/metrics/window_level/{f05}.json" for f05 in ("v501", "v502", "v503")]
    for values in per_model.values():
        assert set(values) == {"precision", "recall", "f1"} and all(0 <= v <= 1 for v in values.values())
    assert f"{DEPLOY}/verdict.json" not in files  # an output, not a metric: read it, or `make check7`
    # its headline is: passed 1/0 and the failed checks, beside the models' values
    assert files[f"{DEPLOY}/verdict_metrics.json"]["data"] == {"passed": 1, "failed": 0}
    assert json.loads((demo_project / DEPLOY / "verdict.json").read_text())["passed"] is True


def test_second_repro_changes_nothing(project_copy):
    before = (project_copy / "dvc.lock").read_text()
    assert "up to date" in dvc(project_copy, "repro").stdout
    assert (project_copy / "dvc.lock").read_text() == before


def test_forced_packaging_gives_the_same_hashes(project_copy):
    before, demo_before = lock(project_copy), lock(project_copy, "demo/dvc.lock")
    forced = F06_STAGES + ["demo/dvc.yaml:f03_windows@v301", "demo/dvc.yaml:f04_targets@v401"]
    output = dvc(project_copy, "repro", "-f", "-s", *forced).stdout
    assert all(f"Running stage '{stage}'" in output for stage in forced), output
    after, demo_after = lock(project_copy), lock(project_copy, "demo/dvc.lock")
    for stage in F06_STAGES:
        assert after[stage]["outs"] == before[stage]["outs"], stage
    for stage in ["f03_windows@v301", "f04_targets@v401"]:
        assert demo_after[stage]["outs"] == demo_before[stage]["outs"], stage


def test_exp_run_reruns_only_what_its_overrides_reach_and_exp_show_lists_them(project_copy):
    """One `dvc exp run -S ...` (README) with three overrides of two variants: v601's replay
    start and OW rerun its replay and seal but not its model selection (same models) nor
    the demo upstream; v701's F07 stages rerun on the new package with the new batch size;
    `dvc exp show` lists the experiment's params and its new metrics. The copy removes v711
    first: v701's MLServer twin would rerun on the new package too, the same stages again."""
    root = project_copy
    run([sys.executable, "-m", "lifecycle", "remove7", "--variant", "v711"], root)  # `make remove7 VARIANT=v711`
    commit_all(root, "v701 only")
    metadata = json.loads((root / PACKAGE / "06_packaging_metadata.json").read_text())
    start = metadata["replay"]["first_segs"] + 86_400
    new_ow = metadata["temporal"]["OW"]["value"] // 2
    output = dvc(root, "exp", "run", "-S", f"packaging.v601.replay.time_range.start={start}",
                 "-S", f"packaging.v601.temporal.OW={new_ow}", "-S", "deployrun.v701.batch_size=64").stdout
    assert "Running stage 'materialize_replay@v601'" in output
    assert "Running stage 'seal_package@v601'" in output
    assert "Running stage 'infer@v701'" in output
    assert "Running stage 'select_models@v601'" not in output
    assert "Running stage 'demo/dvc.yaml:" not in output
    metadata = json.loads((root / PACKAGE / "06_packaging_metadata.json").read_text())
    assert metadata["replay"]["first_segs"] == start
    assert metadata["temporal"]["OW"] == {"value": new_ow, "source": "user (packaging.v601.temporal.OW)"}

    baseline = json.loads(dvc(root, "exp", "show", "--json").stdout)[1]
    [experiment] = [rev for group in baseline["experiments"] for rev in group["revs"]]
    params_ = experiment["data"]["params"]["params.yaml"]["data"]
    assert params_["packaging"]["v601"]["temporal"]["OW"] == new_ow
    assert params_["deployrun"]["v701"]["batch_size"] == 64
    metrics = experiment["data"]["metrics"]
    assert f"{DEPLOY}/metrics/window_level/v501.json" in metrics
    assert metrics != baseline["data"]["metrics"]  # other windows, other figures
    # the verdict is an output, not a DVC metric (dvc metrics show stays narrow): the experiment wrote it
    assert json.loads((root / DEPLOY / "verdict.json").read_text())["passed"] in (True, False)


def test_verify_fails_after_one_byte_of_a_packaged_model_changes(project_copy):
    model = project_copy / PACKAGE / "models/v402/v503__grid_active_power_any-to-80_100/model.h5"
    data = bytearray(model.read_bytes())
    data[-100] ^= 0xFF
    model.write_bytes(bytes(data))
    result = run([sys.executable, "-m", "contract.seal", "verify", PACKAGE], project_copy, check=False)
    assert result.returncode == 1
    assert "changed: models/v402/v503__grid_active_power_any-to-80_100/model.h5" in result.stderr


def test_gates_rejudge_the_run_without_serving_it_again(project_copy):
    def gate(params, bounds):
        params["deployrun"]["v701"]["gates"] = {"min": bounds}
        return params

    def by_hand(params):
        """v701 written by hand without the optional keys whose defaults are the demo's
        values, which DVC refused as missing parameters (the README's v701 writes them)."""
        for key in ("batch_size", "check_equivalence", "equivalence_sample_windows", "log_csv_compression"):
            del params["deployrun"]["v701"][key]
        return gate(params, {"precision": 0.999})

    edit_params(project_copy, by_hand)
    output = dvc(project_copy, "repro").stdout
    assert "Running stage 'settings@v701'" in output and "Running stage 'verdict@v701'" in output
    for stage in ("serve", "infer", "reference"):  # the reference stage runs every model again
        assert f"Running stage '{stage}@v701'" not in output, output
    verdict = json.loads((project_copy / DEPLOY / "verdict.json").read_text())
    assert verdict["passed"] is False
    failed = [c["name"] for c in verdict["checks"] if c["passed"] is False]
    assert failed and all(name.startswith("gate min precision 0.999") for name in failed)
    assert "FAILED" in (project_copy / DEPLOY / "report/report.html").read_text()

    edit_params(project_copy, lambda p: gate(p, {"recall": 1.01}))
    refused = dvc(project_copy, "repro", check=False)
    assert refused.returncode != 0
    assert "deployrun.v701.gates.min.recall" in refused.stderr + refused.stdout

    # a key written again (the gate fixed), to another value, still reruns the stage that uses it
    def gzip_copy(params):
        params["deployrun"]["v701"]["log_csv_compression"] = "gzip"
        params["deployrun"]["v701"]["reference"] = {"tolerance": 1e-4}
        return gate(params, {"recall": 0.5})

    edit_params(project_copy, gzip_copy)
    # run on its own before settings, the reference stage would compare on other terms than DVC records
    stale = run([sys.executable, "-m", "stages.reference", "v701"], project_copy, check=False)
    assert stale.returncode == 1 and "`dvc repro settings@v701` first" in stale.stderr, stale.stderr
    dvc(project_copy, "repro", "-s", "settings@v701")
    status = json.loads(dvc(project_copy, "status", "--json", "serve@v701", "infer@v701", "reference@v701").stdout)
    assert status == {"infer@v701": [{"changed deps": {f"{DEPLOY}/params.yaml": {"log_csv_compression": "modified"}}}],
                      "reference@v701": [{"changed deps": {f"{DEPLOY}/params.yaml": {"reference": "modified"}}}]}


def files_under(root, folder) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted((root / folder).rglob("*"))
            if path.is_file()}


def test_a_busy_explicit_port_fails_naming_it_before_any_output_is_removed(project_copy):
    """An explicit port stays supported; when another program holds it, `dvc repro` stops
    at the stage that needs it, naming the port and the key to change, and every file of
    every result of every F07 run is still there byte for byte: serve and infer keep their
    outputs in place (`persist`) and check the port before they touch anything. (The run's
    params.yaml, the settings stage's, holds the new port: it records the configuration.)"""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        def occupy(params):
            params["deployrun"]["v701"]["runtime"]["port"] = port
            return params

        edit_params(project_copy, occupy)
        before = files_under(project_copy, "executions/07_deployrun")
        before.pop(f"{DEPLOY}/params.yaml")
        for targets in ([], ["-s", "infer@v701"]):  # the whole pipeline (serve first), and infer alone
            result = dvc(project_copy, "repro", *targets, check=False)
            assert result.returncode != 0
            assert f"port {port} on 127.0.0.1 is already in use" in result.stderr, result.stderr
            assert "deployrun.v701.runtime.port" in result.stderr and "Traceback" not in result.stderr
            after = files_under(project_copy, "executions/07_deployrun")
            assert f"port: {port}" in after.pop(f"{DEPLOY}/params.yaml").decode()
            assert sorted(after) == sorted(before), sorted(set(before) ^ set(after))
            assert [path for path in before if before[path] != after[path]] == []


def test_a_rerun_of_infer_shows_the_throughput_it_measured(project_copy):
    """`dvc repro` (what `make run` runs) rebuilding the log of a run whose git-tracked
    report is already there (a clone holding the report without the log, a log removed by
    hand): the report must show the throughput just measured (report/runtime.js), on the
    free port the run recorded. Infer removes the earlier run's results once its server is
    up, so the report is rendered again rather than kept with a stale or missing sidecar."""
    deploy = project_copy / DEPLOY
    shutil.rmtree(deploy / "logs")
    (deploy / "report" / "runtime.js").unlink()
    stages = dvc(project_copy, "repro").stdout
    assert "Running stage 'infer@v701'" in stages and "Running stage 'report@v701'" in stages, stages
    timing = json.loads((deploy / "logs" / "timing.json").read_text())
    assert timing["windows_per_second"] > 0
    assert re.fullmatch(r"http://127\.0\.0\.1:[1-9]\d*", timing["url"]), timing  # port 0 became a real port
    shown = (deploy / "report" / "runtime.js").read_text()
    assert shown.startswith("window.F07_RUNTIME = ") and json.loads(shown.split(" = ", 1)[1].rstrip(";\n")) == timing


def test_a_refused_parameter_loses_no_output(project_copy):
    """DVC removes a stage's outputs before its command runs; a stage that then refuses a
    mistaken parameter used to leave the variant without them (`model_id: nope` deleted
    the package's models/, and the seal no longer verified). Every output is persist and
    replaced atomically, so each refusal below leaves every F06 and F07 file byte for byte."""
    pristine = (project_copy / "params.yaml").read_text()

    def unknown_model(params):
        params["packaging"]["v601"]["models"]["v401"][0]["model_id"] = "nope"
        return params

    def unknown_gate_metric(params):
        params["deployrun"]["v701"]["gates"] = {"min": {"nope": 0.5}}
        return params

    before = {**files_under(project_copy, PACKAGE), **files_under(project_copy, DEPLOY)}
    for change, stage, named in ((unknown_model, "select_models@v601", "nope"),
                                 (unknown_gate_metric, "verdict@v701", "nope")):
        edit_params(project_copy, change)
        refused = dvc(project_copy, "repro", "-s", stage, check=False)
        assert refused.returncode != 0 and named in refused.stderr, refused.stderr
        after = {**files_under(project_copy, PACKAGE), **files_under(project_copy, DEPLOY)}
        assert sorted(after) == sorted(before), (stage, sorted(set(before) ^ set(after)))
        assert [path for path in before if before[path] != after[path]] == [], stage
        (project_copy / "params.yaml").write_text(pristine)
    verified = run([sys.executable, "-m", "contract.seal", "verify", PACKAGE], project_copy, check=False)
    assert verified.returncode == 0, verified.stderr


def test_server_killed_under_dvc_gives_a_failed_verdict_on_the_next_repro(project_copy, tmp_path):
    """The issue's acceptance: SIGKILL the server mid-replay of `dvc repro -f -s
    infer@v701`; the stage exits 0, the next `dvc repro` writes a FAILED verdict naming
    the server's exit, and no complete-looking log or earlier PASSED verdict remains. (The
    server is made to stall at its third batch, so that the kill lands mid-replay however
    fast or loaded the machine is; the kill itself comes from outside, by pid.)"""
    root = project_copy
    run_dir = root / DEPLOY
    assert json.loads((run_dir / layout.VERDICT).read_text())["passed"] is True
    stalled = tmp_path / "stalled"
    env = {**project_env(), "PYTHONPATH": str(FAULTS),
           "F07_TEST_FAULT": json.dumps({"kind": "hang_after", "batches": 3, "hung_file": str(stalled)})}
    infer = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "-f", "-s", "infer@v701"], cwd=root,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    manifest = str((run_dir / layout.MANIFEST).resolve())
    server, deadline = None, time.monotonic() + 180
    while server is None and time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-f", f"runtime.server --manifest {manifest}"],
                               capture_output=True, text=True).stdout.split()
        server = int(found[0]) if found else None
        time.sleep(0.2)
    assert server is not None, "the infer stage did not start its server"
    while not stalled.exists() and time.monotonic() < deadline:  # loaded, ready, stalled at its third batch
        time.sleep(0.2)
    assert stalled.exists(), "the server never reached its third batch"
    os.kill(server, signal.SIGKILL)
    out, _ = infer.communicate(timeout=300)
    assert infer.returncode == 0, out
    assert "RUNTIME FAULT" in out and "killed by SIGKILL" in out
    assert not (run_dir / layout.VERDICT).exists() and not (run_dir / layout.REPORT_HTML).exists()
    assert not (run_dir / layout.PREDICTIONS).exists() and (run_dir / layout.PREDICTIONS_PARTIAL).exists()
    repro = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=project_env(),
                           capture_output=True, text=True, timeout=600)
    assert repro.returncode == 0, repro.stdout + repro.stderr
    verdict = json.loads((run_dir / layout.VERDICT).read_text())
    assert verdict["passed"] is False
    failed = {check["name"]: check["detail"] for check in verdict["checks"] if check["passed"] is False}
    assert "killed by SIGKILL" in failed["replay completed"]
    assert "Runtime fault" in (run_dir / layout.REPORT_HTML).read_text()
