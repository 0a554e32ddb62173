"""Every check of the verdict fails for its real reason, against real server processes.

The F07 stages run as their scripts run them (``stages.<name>.main``, in this process,
from a temporary project root), on the small validated package of
tests/validated_package.py, served once by the serve stage and then replayed by the
infer stage through a real server process, with one fault injected into that process
(tests/server_faults). A correct run passes every check; each fault fails the check that
exists to catch it, and the check's detail says why. The last section injects the same
faults into MLServer (``runtime: {server: mlserver}``) and finds the same checks failing.

A fault in a server's answers or decisions needs no server of its own: one server process
per module (``our_server``, ``mlserver_faults``), validated by URL, reads its fault from a
file on every request (tests/server_faults: ``from_file``). A fault that must be there
when the server starts (a vocabulary shift), that ends the process (a kill), or that lies
in the package served, gets a server started by the stage, as a run starts it.
"""
from __future__ import annotations

import gzip
import importlib
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from contract import layout
from contract.errors import UserError
from f07_validation.infer import equivalence_stride
from tests.server_faults.faults import log_writer as log_writer_patch
from tests.server_faults.faults import vocab_shift
from tests.validated_package import CNN, DENSE, EMBEDDING, FAULTS, build_validated_package

VARIANT = "v701"
RUN = Path("executions") / layout.F07 / VARIANT
ENTRY = {"parent_variant_f06": "v601", "runtime": {"host": "127.0.0.1", "port": 0}, "batch_size": 32,
         "check_equivalence": True}


def write_params(root: Path, **entry) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump({"deployrun": {VARIANT: {**ENTRY, **entry}}}))


def run_stages(*names: str) -> None:
    for name in names:
        importlib.import_module(f"stages.{name}").main(VARIANT)


def served_project(root: Path, **package_options) -> Path:
    """A project root holding the validated package, served by the serve stage."""
    build_validated_package(root / "executions", **package_options)
    write_params(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        run_stages("settings", "serve")
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return served_project(tmp_path_factory.mktemp("served") / "project")


@pytest.fixture(scope="module")
def pristine_judged(pristine, tmp_path_factory) -> Path:
    """The served project after one correct run (infer, score, reference, verdict): the
    earlier, passing run the tests of a later failure start from, replayed once."""
    root = Path(shutil.copytree(pristine, tmp_path_factory.mktemp("judged") / "project"))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        judge(patch)
    return root


def working_copy(source: Path, tmp_path: Path, monkeypatch) -> Path:
    root = Path(shutil.copytree(source, tmp_path / "project"))
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def project(pristine, tmp_path, monkeypatch) -> Path:
    """A private copy of the served project, as the working directory."""
    return working_copy(pristine, tmp_path, monkeypatch)


@pytest.fixture
def judged_project(pristine_judged, tmp_path, monkeypatch) -> Path:
    """A private copy of the project after a correct run, as the working directory."""
    return working_copy(pristine_judged, tmp_path, monkeypatch)


def serving_by_url(pristine: Path, folder: Path, server_of, runtime: dict):
    """A copy of the served project in ``folder`` validating by URL the server that
    ``server_of(its manifest path)`` gives (not started yet: a ServerProcess or an
    MLServerProcess), the serve stage run against it, and the file that process reads
    its fault from on every request (tests/server_faults: ``from_file``; the fault in the
    server's environment only, not in this process's). Yields (the project, its
    ``runtime`` settings, the fault file); the server is stopped on the way out."""
    root = Path(shutil.copytree(pristine, folder / "project"))
    fault_file = folder / "fault.json"
    server = server_of(root / RUN / layout.MANIFEST)
    environment = server.environment

    def with_fault() -> dict:
        env = environment()
        env["PYTHONPATH"] += os.pathsep + str(FAULTS)
        env["F07_TEST_FAULT"] = json.dumps({"kind": "from_file", "path": str(fault_file)})
        return env

    server.environment = with_fault
    with server:
        server.wait_ready()
        by_url = {"url": server.url, **runtime}
        write_params(root, runtime=by_url)
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(root)
            run_stages("settings", "serve")
        yield root, by_url, fault_file
    assert server.process.poll() is not None  # stopped with the module


@pytest.fixture(scope="module")
def our_server(pristine, tmp_path_factory):
    """Our server (``runtime.server``, werkzeug), started once for every fault of its
    answers or decisions, validated by URL: see ``serving_by_url``."""
    from f07_validation.client import ServerProcess

    yield from serving_by_url(pristine, tmp_path_factory.mktemp("our_server"),
                              lambda manifest: ServerProcess(manifest, host="127.0.0.1"), {})


def judge_through(shared, tmp_path, monkeypatch, fault: dict | None, runtime=(), **entry) -> dict:
    """A private copy of the project of ``shared`` (``our_server``, ``mlserver_faults``),
    judged through its server answering with ``fault`` (None: none); the verdict."""
    source, by_url, fault_file = shared
    root = working_copy(source, tmp_path, monkeypatch)
    write_params(root, runtime={**by_url, **dict(runtime)}, **entry)
    if fault is not None:
        fault_file.write_text(json.dumps(fault))
    try:
        return judge(monkeypatch)
    finally:
        fault_file.unlink(missing_ok=True)  # lifted: a hung request ends, the next test starts clean


def judge(monkeypatch, fault: dict | None = None) -> dict:
    """infer (with ``fault`` in the server process), score, reference and verdict; the verdict."""
    if fault is not None:
        monkeypatch.setenv("PYTHONPATH", str(FAULTS))
        monkeypatch.setenv("F07_TEST_FAULT", json.dumps(fault))
    run_stages("settings", "infer")
    monkeypatch.delenv("F07_TEST_FAULT", raising=False)
    run_stages("score", "reference", "verdict")
    return json.loads((RUN / layout.VERDICT).read_text())


def log_writer_fault(kind: str, **options) -> tuple:
    """(PredictionLog, "add", a faulty add) for ``monkeypatch.setattr``."""
    cls, add = log_writer_patch(kind, **options)
    return cls, "add", add


def outcome(verdict: dict) -> dict[str, bool | None]:
    return {check["name"]: check["passed"] for check in verdict["checks"]}


def failed(verdict: dict) -> dict[str, str]:
    return {check["name"]: check["detail"] for check in verdict["checks"] if check["passed"] is False}


# --------------------------------------------------------------------------- a correct run

def test_a_correct_run_passes_every_check_and_measures_each(judged_project):
    verdict = json.loads((RUN / layout.VERDICT).read_text())
    assert verdict["passed"], failed(verdict)
    checks = outcome(verdict)
    for key in (DENSE, EMBEDDING, CNN):
        for name in ("reference equivalence", "reference decisions", "logged decisions", "coverage",
                     "scored share", "finite outputs", "model ready"):
            assert checks[f"{name}: {key}"] is True
    for name in ("replay completed", "every replay window sent", "every window answered",
                 "every prediction logged", "seal verified when served", "server ready",
                 "server loaded the package", "package unchanged since served"):
        assert checks[name] is True, name
    reference = json.loads((RUN / layout.REFERENCE).read_text())
    windows = pq.read_metadata(RUN / layout.PREDICTIONS).num_rows // 3
    assert all(model["compared"] > 150 and model["compared"] <= windows for model in reference["models"].values())
    # a replay shorter than the default equivalence sample: every window compared in-process
    equivalence = json.loads((RUN / layout.EQUIVALENCE).read_text())
    assert equivalence["stride_batches"] == 1 and equivalence["windows_compared"] == windows
    serve = json.loads((RUN / layout.SERVE_RECORD).read_text())
    assert serve["ready"]["status"] == 200 and serve["seal"]["verified"] is True
    # every logged decision checked, and the reference's taken at the summary's threshold
    for model in reference["models"].values():
        assert model["decisions"] == {"rows": windows, "inconsistent": 0, "first_inconsistent": []}
        assert model["threshold"] == 0.5 and model["threshold_source"] == "model_summary.json of the package"
        # the replay's last windows have no F04 row (their PW runs past the data): not a failed join
        assert model["matched"] < model["logged"] and model["join_diagnosis"] is None
    assert all(m["decision_mismatch"] == 0 for m in equivalence["models"].values())
    # this variant sets no gates: quality is shown as not judged, never as passed
    assert {name: passed for name, passed in checks.items() if name.startswith("gate")} == {
        "gate min recall": None, "gate min f1": None}


# --------------------------------------------------------------------------- wrong answers

def test_a_vocabulary_shift_in_the_runtime_fails_the_reference_but_not_the_transport_check(project, monkeypatch):
    """The same bug in the server and in the in-process comparison (both run
    runtime.vectorize): the transport check passes, the independent reference fails
    naming the two sequence models and their first windows."""
    cls, shifted = vocab_shift("sequence")
    monkeypatch.setattr(cls, "__call__", shifted)
    verdict = judge(monkeypatch, {"kind": "vocab_shift", "family": "sequence"})
    wrong = failed(verdict)
    shifted = {f"reference equivalence: {EMBEDDING}", f"reference equivalence: {CNN}"}
    # shifted inputs move probabilities across the threshold too: decisions may differ as well
    assert shifted <= set(wrong) <= shifted | {f"reference decisions: {EMBEDDING}", f"reference decisions: {CNN}"}, wrong
    assert "windows differ" in wrong[f"reference equivalence: {CNN}"]
    assert "t0 " in wrong[f"reference equivalence: {CNN}"] and "server" in wrong[f"reference equivalence: {CNN}"]
    assert outcome(verdict)[f"transport: {CNN}"] is True


@pytest.mark.parametrize("windows, batch, sample, expected", [
    (1000, 32, None, 1), (1000, 32, 1000, 1), (1000, 32, 5000, 1),  # every batch
    (1000, 32, 200, 4),  # 32 batches, 7 needed: batches 0, 4, ... 28 and the last (9 x 32 >= 200)
    (40_300, 256, 20_000, 2),  # the full demo: 158 batches, 79 needed
])
def test_the_equivalence_sample_compares_at_least_its_windows(windows, batch, sample, expected):
    stride = equivalence_stride(windows, batch, sample)
    assert stride == expected
    compared = sum(min(batch, windows - start) for index, start in enumerate(range(0, windows, batch))
                   if index % stride == 0 or start + batch >= windows)
    assert compared >= min(sample or windows, windows)


@pytest.mark.parametrize("batch, caught_by", [(1, "transport"), (2, "reference equivalence")])
def test_a_transport_altering_answers_fails_the_check_whose_sample_holds_its_batch(our_server, tmp_path,
                                                                                  monkeypatch, batch, caught_by):
    """Answers of one model scaled on one batch. With a transport sample of two batches'
    worth, the first batch is compared in-process and the second is not: there the
    transport check cannot see it, and the independent reference (every window here)
    does."""
    verdict = judge_through(our_server, tmp_path, monkeypatch,
                            {"kind": "scale", "batch": batch, "model_id": "obj_b", "factor": 0.5},
                            equivalence_sample_windows=64)
    wrong = failed(verdict)
    equivalence = json.loads((RUN / layout.EQUIVALENCE).read_text())
    summary = json.loads((RUN / layout.RUN_SUMMARY).read_text())
    assert equivalence["stride_batches"] > 1 and 64 <= equivalence["windows_compared"] < summary["windows_answered"]
    assert f"{caught_by}: {CNN}" in wrong, wrong
    if caught_by == "transport":
        assert "1 batch in " in wrong[f"transport: {CNN}"] and "equivalence_sample_windows" in wrong[f"transport: {CNN}"]
    else:
        assert outcome(verdict)[f"transport: {CNN}"] is True
    assert f"transport: {DENSE}" not in wrong and f"reference equivalence: {DENSE}" not in wrong


def test_a_server_answering_windows_out_of_order_fails_the_reference(our_server, tmp_path, monkeypatch):
    verdict = judge_through(our_server, tmp_path, monkeypatch, {"kind": "reorder"})
    wrong = failed(verdict)
    for key in (DENSE, EMBEDDING, CNN):
        assert f"reference equivalence: {key}" in wrong


def test_a_model_answering_nan_on_some_windows_fails_its_finite_check(our_server, tmp_path, monkeypatch):
    verdict = judge_through(our_server, tmp_path, monkeypatch, {"kind": "nan", "model_id": "obj_b", "every": 5})
    wrong = failed(verdict)
    assert f"finite outputs: {CNN}" in wrong and "NaN or infinite" in wrong[f"finite outputs: {CNN}"]
    assert f"finite outputs: {DENSE}" not in wrong


# --------------------------------------------------------------------------- wrong decisions

def test_a_server_deciding_with_its_comparison_inverted_fails_every_decision_check(our_server, tmp_path,
                                                                                   monkeypatch):
    """`probability < threshold` in the server's core: every probability is right, every
    decision wrong. The reference, the whole-log consistency and the transport each say so."""
    verdict = judge_through(our_server, tmp_path, monkeypatch, {"kind": "decision", "rule": "inverted"})
    wrong = failed(verdict)
    for key in (DENSE, EMBEDDING, CNN):
        assert "decided otherwise at threshold 0.5 (model_summary.json" in wrong[f"reference decisions: {key}"]
        assert "logged rows disagree with threshold 0.5" in wrong[f"logged decisions: {key}"]
        assert "another y_pred than in-process" in wrong[f"transport: {key}"]
        assert f"reference equivalence: {key}" not in wrong


def test_a_log_writer_stacking_decisions_model_major_fails_the_decision_checks(our_server, tmp_path, monkeypatch):
    """The server answers right, the log writer puts each y_pred on another row (one
    `axis=1` forgotten): the logged decisions disagree with the logged probabilities and
    with the reference; the transport (the answers as received) still agrees."""
    monkeypatch.setattr(*log_writer_fault("y_pred_model_major"))
    verdict = judge_through(our_server, tmp_path, monkeypatch, None)
    wrong = failed(verdict)
    for key in (DENSE, EMBEDDING, CNN):
        assert "logged rows disagree" in wrong[f"logged decisions: {key}"]
        assert "windows decided otherwise" in wrong[f"reference decisions: {key}"]
        assert f"transport: {key}" not in wrong and f"reference equivalence: {key}" not in wrong


@pytest.mark.parametrize("shared", ["our_server", "mlserver_faults"])
def test_a_server_deciding_at_another_threshold_fails_naming_the_declared_one(shared, request, tmp_path,
                                                                              monkeypatch):
    """Every model's summary declares 0.5; the server's core decides at 0.3 regardless
    (our server, and MLServer's runtime class). The models whose probabilities fall in
    [0.3, 0.5) fail, naming the declared threshold, the others (no window decided
    differently) do not."""
    wrong = failed(judge_through(request.getfixturevalue(shared), tmp_path, monkeypatch,
                                 {"kind": "decision", "threshold": 0.3}))
    log = pq.read_table(RUN / layout.PREDICTIONS).to_pandas()
    between = log[(log.probability >= 0.3) & (log.probability < 0.5)]
    affected = set(between.objective + "/" + between.source_f05 + "/" + between.model_id)
    assert EMBEDDING in affected
    for key in (DENSE, EMBEDDING, CNN):
        assert (f"logged decisions: {key}" in wrong) == (key in affected), wrong
        if key in affected:
            assert "threshold 0.5 (model_summary.json of the package)" in wrong[f"logged decisions: {key}"]
            assert "threshold 0.5" in wrong[f"reference decisions: {key}"]


@pytest.mark.parametrize("transform, cause", [
    (lambda t0: t0 + 1, "174 of the 174 logged t0s are off the replay's time grid (origin 1700000000 + k x 10 s), "
                        "most by +1 s, and 174 match no t0 of the F04 dataset of v40"),
    (lambda t0: t0 + 3600, "they are the F04 t0s shifted by a constant +3600 s (+360 x Tu)"),
    (lambda t0: t0 * 1000, "they are in milliseconds, not epoch seconds"),
], ids=["off-grid", "offset", "milliseconds"])
def test_logged_t0s_that_miss_the_f04_windows_fail_naming_the_cause(our_server, tmp_path, monkeypatch, transform,
                                                                    cause):
    """Every prediction logged, under t0s that miss the F04 windows: coverage and the
    scored share fail, and say why instead of 'no prediction'."""
    monkeypatch.setattr(*log_writer_fault("t0", transform=transform))
    wrong = failed(judge_through(our_server, tmp_path, monkeypatch, None))
    for key in (DENSE, EMBEDDING, CNN):
        assert cause in wrong[f"coverage: {key}"], wrong[f"coverage: {key}"]
        assert cause in wrong[f"scored share: {key}"], wrong[f"scored share: {key}"]
    assert "every prediction logged" not in wrong


def test_an_empty_log_fails_naming_it(our_server, tmp_path, monkeypatch):
    monkeypatch.setattr(*log_writer_fault("nothing"))
    wrong = failed(judge_through(our_server, tmp_path, monkeypatch, None))
    assert "every prediction logged" in wrong
    for key in (DENSE, EMBEDDING, CNN):
        assert "the prediction log holds no row of this model" in wrong[f"coverage: {key}"]


def test_quality_gates_breached_or_switched_off_say_so(judged_project):
    """A floor the models miss fails per model with the measured value; a gate written as
    null is shown as off (not measured), never as passed."""
    write_params(judged_project, gates={"min": {"f1": 0.99, "recall": None}})
    run_stages("verdict")
    verdict = json.loads((RUN / layout.VERDICT).read_text())
    wrong = failed(verdict)
    for key in (DENSE, EMBEDDING, CNN):
        assert wrong[f"gate min f1 0.99: {key}"].startswith("f1 = ")
    off = {c["name"]: c for c in verdict["checks"] if c["name"].startswith("gate min recall")}
    assert len(off) == 3 and all(c["passed"] is None and "off: deployrun.v701.gates.min.recall is null"
                                 in c["detail"] for c in off.values())
    metrics = json.loads((RUN / layout.VERDICT_METRICS).read_text())
    assert metrics == {"passed": 0, "failed": 3}


# --------------------------------------------------------------------------- runtime faults

def log_files() -> set[str]:
    """The prediction log's files in the run's logs/ (parquet and CSV, complete or partial)."""
    return {path.relative_to(RUN).as_posix() for path in (RUN / layout.LOGS_DIR).glob("raw_predictions*")}


def assert_partial_log_only(csv_compression: str = "none") -> None:
    """Only the partial log remains, its CSV copy named for ``csv_compression``: no
    complete-looking log, and no CSV of another setting."""
    assert log_files() == {layout.PREDICTIONS_PARTIAL, layout.PREDICTIONS_CSV_PARTIAL[csv_compression]}


def test_a_server_killed_mid_replay_is_a_failed_verdict_naming_its_exit(judged_project, monkeypatch):
    # the earlier, passing run of the same variant, its CSV copy plain
    assert log_files() == {layout.PREDICTIONS, layout.PREDICTIONS_CSV["none"]}
    write_params(judged_project, log_csv_compression="gzip")
    verdict = judge(monkeypatch, {"kind": "kill_after", "batches": 3})
    wrong = failed(verdict)
    assert "exited with code -9 (killed by SIGKILL)" in wrong["replay completed"]
    assert "batch 3" in wrong["replay completed"]
    assert "every replay window sent" in wrong and f"coverage: {DENSE}" in wrong
    summary = json.loads((RUN / layout.RUN_SUMMARY).read_text())
    assert summary["windows_answered"] == 2 * 32 and summary["fault"]["exit_code"] == -9
    assert pq.read_metadata(RUN / layout.PREDICTIONS_PARTIAL).num_rows == 2 * 32 * 3
    assert_partial_log_only("gzip")  # the earlier run's plain CSV is gone too
    csv = gzip.decompress((RUN / layout.PREDICTIONS_CSV_PARTIAL["gzip"]).read_bytes())
    assert csv.count(b"\n") == 1 + 2 * 32 * 3  # the header and every row logged


def processes_in(folder: Path) -> list[int]:
    """Every process but this one whose working directory is ``folder`` (a server started
    from the project root, and anything it left behind)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int(entry.name) != os.getpid() and \
                    Path(os.readlink(entry / "cwd")) == folder.resolve():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            pass
    return found


def test_a_gunicorn_master_killed_mid_replay_is_a_fault_and_leaves_no_worker(project, monkeypatch):
    """The master killed, its orphaned workers went on answering on the inherited socket:
    the replay completed, no fault was recorded, and the verdict PASSED. Answers that
    arrive after the server process exited are a fault, and its workers are stopped."""
    write_params(project, runtime={"host": "127.0.0.1", "port": 0, "server": "gunicorn", "workers": 2})
    verdict = judge(monkeypatch, {"kind": "kill_master_after", "batches": 3})
    wrong = failed(verdict)
    assert "exited with code -9 (killed by SIGKILL)" in wrong.get("replay completed", ""), wrong
    summary = json.loads((RUN / layout.RUN_SUMMARY).read_text())
    assert summary["fault"]["kind"] == "server exited"  # noticed on the first answer after it (4 in flight)
    assert "had exited when this answer arrived" in summary["fault"]["client_error"]
    assert_partial_log_only()
    assert processes_in(project) == []


def test_a_server_dropping_a_window_is_a_failed_verdict(our_server, tmp_path, monkeypatch):
    verdict = judge_through(our_server, tmp_path, monkeypatch, {"kind": "drop", "after": 2})
    wrong = failed(verdict)
    assert "31 probabilities for 32 windows" in wrong["replay completed"]
    assert_partial_log_only()


def test_a_model_erroring_on_a_batch_is_a_failed_verdict(our_server, tmp_path, monkeypatch):
    verdict = judge_through(our_server, tmp_path, monkeypatch, {"kind": "fail_after", "batches": 2})
    assert "answered 500" in failed(verdict)["replay completed"]


def test_a_server_that_stops_answering_times_out_into_a_failed_verdict(our_server, tmp_path, monkeypatch):
    verdict = judge_through(our_server, tmp_path, monkeypatch, {"kind": "hang_after", "batches": 2},
                            runtime={"request_timeout": 2})
    assert "did not answer within 2" in failed(verdict)["replay completed"]


def test_a_configuration_error_still_stops_infer_and_leaves_the_earlier_run_whole(judged_project):
    """A harness or configuration error (here a package that no longer verifies) is an
    error, not a verdict; it stops before the replay, so the earlier run's log, verdict and
    report still belong together."""
    before = {path: path.read_bytes() for path in RUN.rglob("*") if path.is_file()}
    shutil.rmtree(Path("executions") / layout.F06 / "v601" / "models")
    with pytest.raises(UserError, match="seal does NOT verify"):
        run_stages("settings", "infer")
    assert {path: path.read_bytes() for path in RUN.rglob("*") if path.is_file()} == before


# --------------------------------------------------------------------------- the CSV copy of the log

def infer_with(project: Path, runtime: dict, csv_compression: str) -> bytes:
    """infer alone (no in-process comparison: only the log is looked at) through the
    server of ``runtime`` with ``log_csv_compression: csv_compression``; the bytes of the
    CSV copy it wrote."""
    write_params(project, runtime=runtime, check_equivalence=False, log_csv_compression=csv_compression)
    run_stages("settings", "infer")
    assert log_files() == {layout.PREDICTIONS, layout.PREDICTIONS_CSV[csv_compression]}  # no file of the other
    return (RUN / layout.PREDICTIONS_CSV[csv_compression]).read_bytes()


def test_the_gzip_csv_copy_is_the_plain_one_compressed(our_server, tmp_path, monkeypatch):
    """Same replay, same server: the gzip copy decompresses to the plain CSV byte for
    byte, and switching leaves only the current setting's file (the other way, and the
    partial log, in the SIGKILL test above; the bytes on a re-run in
    test_prediction_log.py)."""
    source, by_url, _ = our_server
    project = working_copy(source, tmp_path, monkeypatch)
    compressed = infer_with(project, by_url, "gzip")
    # the gzip header's fields that would vary between runs: no file name (flags 0), mtime 0
    assert compressed[:4] == b"\x1f\x8b\x08\x00" and compressed[4:8] == bytes(4)
    plain = infer_with(project, by_url, "none")
    assert plain.count(b"\n") == 1 + pq.read_metadata(RUN / layout.PREDICTIONS).num_rows
    assert gzip.decompress(compressed) == plain
    assert len(compressed) < len(plain) / 4


# --------------------------------------------------------------------------- the package and the replay

def test_a_package_file_changed_after_serving_fails_the_verdict(judged_project):
    summary = next((Path("executions") / layout.F06 / "v601" / "models").rglob(layout.MODEL_SUMMARY))
    summary.write_text(summary.read_text() + " ")
    run_stages("verdict")
    wrong = failed(json.loads((RUN / layout.VERDICT).read_text()))
    assert "no longer verifies" in wrong["package unchanged since served"]
    assert summary.parent.name in wrong["package unchanged since served"]


def test_a_replay_that_misses_f04_windows_of_its_range_fails_coverage(tmp_path, monkeypatch):
    root = served_project(tmp_path / "project", replay_rows=1200)
    monkeypatch.chdir(root)
    wrong = failed(judge(monkeypatch))
    for key in (DENSE, EMBEDDING, CNN):
        assert "F04 windows of the replay got no prediction" in wrong[f"coverage: {key}"]
    assert "every replay window sent" in wrong


def test_a_replay_whose_rows_hold_no_event_fails_naming_the_time_range(tmp_path, monkeypatch):
    """A time range whose F02 rows hold no event: every other check passed on windows that
    were all empty, and precision, recall and F1 came out as 0.0."""
    root = served_project(tmp_path / "project", mean_events=0.0)
    monkeypatch.chdir(root)
    wrong = failed(judge(monkeypatch))
    assert "none of the" in wrong["replay holds events"] and "packaging.v601.replay.time_range" in \
        wrong["replay holds events"], wrong


def test_metrics_on_a_biased_subset_fail_the_scored_share_naming_why(tmp_path, monkeypatch):
    """No t0 in the F04 datasets, and every content labelled both ways: nothing can be
    scored by content, and the check says so."""
    root = served_project(tmp_path / "project", with_t0=False, contradicting_labels=True)
    monkeypatch.chdir(root)
    wrong = failed(judge(monkeypatch))
    detail = wrong[f"scored share: {DENSE}"]
    assert "occur with both labels" in detail and "t0 not recoverable" in detail


# --------------------------------------------------------------------------- as DVC runs it

# --------------------------------------------------------------------------- the same faults on MLServer

KEYS = (DENSE, EMBEDDING, CNN)


@pytest.fixture(scope="module")
def mlserver_faults(pristine, tmp_path_factory):
    """The served project validating one MLServer process by URL (``runtime: {server:
    mlserver, url}``): one MLServer start for every fault below that leaves it running
    (see ``serving_by_url``)."""
    from contract.manifest import load_manifest
    from f07_validation.mlserver_process import MLServerProcess

    yield from serving_by_url(pristine, tmp_path_factory.mktemp("mlserver"),
                              lambda manifest: MLServerProcess(load_manifest(manifest), host="127.0.0.1"),
                              {"server": "mlserver"})


def test_the_shared_mlserver_without_a_fault_passes_every_check(mlserver_faults, tmp_path, monkeypatch):
    """The control of the faults below: the same MLServer, validated by URL, no fault."""
    verdict = judge_through(mlserver_faults, tmp_path, monkeypatch, None)
    assert verdict["passed"], failed(verdict)
    assert {f"transport: {key}" for key in KEYS} <= {name for name, passed in outcome(verdict).items() if passed}


@pytest.mark.parametrize("fault, settings, fails, passes", [
    # each row: the fault of a test above, and the checks its assertions name, failing
    # with what their detail says there (and, where it asserts so, the checks that pass)
    ({"kind": "reorder"}, {}, {f"reference equivalence: {key}": "" for key in KEYS}, ()),
    ({"kind": "nan", "model_id": "obj_b", "every": 5}, {},
     {f"finite outputs: {CNN}": "NaN or infinite"}, (f"finite outputs: {DENSE}",)),
    ({"kind": "scale", "batch": 1, "model_id": "obj_b", "factor": 0.5}, {"equivalence_sample_windows": 64},
     {f"transport: {CNN}": "1 batch in "}, (f"transport: {DENSE}", f"reference equivalence: {DENSE}")),
    ({"kind": "decision", "rule": "inverted"}, {},
     {name: detail for key in KEYS for name, detail in (
         (f"reference decisions: {key}", "decided otherwise at threshold 0.5 (model_summary.json"),
         (f"logged decisions: {key}", "logged rows disagree with threshold 0.5"),
         (f"transport: {key}", "another y_pred than in-process"))},
     tuple(f"reference equivalence: {key}" for key in KEYS)),
    ({"kind": "fail_after", "batches": 2}, {}, {"replay completed": "answered 500"}, ()),
    ({"kind": "drop", "after": 2}, {}, {"replay completed": "31 probabilities for 32 windows"}, ()),
    ({"kind": "hang_after", "batches": 2}, {"runtime": {"request_timeout": 2}},
     {"replay completed": "did not answer within 2"}, ()),
], ids=["reorder", "nan", "scale", "decision-inverted", "fail_after", "drop", "hang_after"])
def test_mlserver_fails_the_verdict_for_the_same_faults_as_our_server(mlserver_faults, tmp_path, monkeypatch,
                                                                     fault, settings, fails, passes):
    """The faults of the tests above, injected into MLServer's runtime class: the same
    checks fail, saying the same."""
    verdict = judge_through(mlserver_faults, tmp_path, monkeypatch, fault, **settings)
    assert verdict["passed"] is False
    wrong = failed(verdict)
    for name, detail in fails.items():
        assert detail in wrong.get(name, "(passed)"), (name, wrong)
    assert not set(passes) & set(wrong), wrong


def test_mlserver_killed_mid_replay_is_a_failed_verdict_naming_its_exit(project, monkeypatch):
    """The F07 run starts MLServer itself (``runtime: {server: mlserver}``), which kills
    itself at batch 3: as with our server, the replay's fault names the exit and the
    batch, two batches were logged, only the partial log remains, and no process is left."""
    write_params(project, runtime={"host": "127.0.0.1", "port": 0, "server": "mlserver"}, check_equivalence=False)
    wrong = failed(judge(monkeypatch, {"kind": "kill_after", "batches": 3}))
    assert "exited with code -9 (killed by SIGKILL)" in wrong["replay completed"], wrong
    assert "batch 3" in wrong["replay completed"]
    assert "every replay window sent" in wrong and f"coverage: {DENSE}" in wrong
    summary = json.loads((RUN / layout.RUN_SUMMARY).read_text())
    assert summary["windows_answered"] == 2 * 32 and summary["fault"]["exit_code"] == -9
    assert_partial_log_only()
    assert processes_in(project) == []
