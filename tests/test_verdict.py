"""F07 verdict: each check and each gate failing on its own, the baseline comparison
across two variants, every configuration error named, and the stage as DVC runs it.

Inputs are the small synthetic run of f07_synthetic.py, made whole: its package sealed
for real (contract.seal), scored by the score stage, plus the serve.json that the serve
stage records. Unless a test says otherwise every output is finite (the synthetic run's
two non-finite v502 outputs are 0 here), so the run passes and one change fails one
thing. Metrics of that run, by hand (windows 0..7, see test_scoring.py):
  v401/v501/power_high  precision 2/3, recall 2/3, f1 2/3, FP 1
  v401/v502/power_high  predicts 0 everywhere: precision 0, recall 0, f1 0, FP 0
  v402/v503/temp.alarm  precision 1/2, recall 1, f1 2/3, FP 1
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from builders.packages import reseal_package
from contract.files import write_json_atomic
from contract import layout
from contract.layout import PACKAGE_METADATA
from contract.seal import seal_package
from f07_validation.deployrun import DeployRunError, load_deployrun
from f07_validation.gates import Bound, GateError, Gates, drop, validate_gates
from f07_validation.verdict import judge
from tests import f07_synthetic as synthetic
from tests.f07_synthetic import run_f07_stage

V501, V502, V503 = "v401/v501/power_high", "v401/v502/power_high", "v402/v503/temp.alarm"
FINITE_Y_PRED = [[0 if y is None else y for y in row] for row in synthetic.Y_PRED]
# The baseline v700: as FINITE_Y_PRED, but v503 does not raise its false alarm at window
# 7, so its precision and f1 are 1.0 there (v501, v502 unchanged).
BASELINE_Y_PRED = [FINITE_Y_PRED[0], FINITE_Y_PRED[1], FINITE_Y_PRED[2][:7] + [0]]
MODELS = (V501, V502, V503)
ALWAYS = ["seal verified when served", "server loaded the package", "package unchanged since served",
          "server ready", *(f"model ready: {m}" for m in MODELS),
          "replay completed", "every replay window sent", "every window answered", "every prediction logged",
          *(f"finite outputs: {m}" for m in MODELS),
          "replay holds events",
          *(f"reference equivalence: {m}" for m in MODELS),
          *(f"reference decisions: {m}" for m in MODELS),
          *(f"logged decisions: {m}" for m in MODELS),
          *(f"coverage: {m}" for m in MODELS),
          *(f"scored share: {m}" for m in MODELS),
          *(f"transport: {m}" for m in MODELS)]
# quality floors a run without gates leaves unset: shown as not judged, never as passed
UNJUDGED = ["gate min recall", "gate min f1"]
# v402 has no t0: which of its windows the replay should reach cannot be measured
NOT_MEASURED = [f"coverage: {V503}"]


def scores_of(root: Path, variant: str) -> Path:
    """Where the score stage of `variant` leaves its metrics_per_model.csv."""
    return root / "executions" / "07_deployrun" / variant / "metrics" / "metrics_per_model.csv"


def score(root: Path, y_pred: list, as_variant: str) -> None:
    """Write the synthetic run with these predictions, score it with the score stage, and
    leave its metrics as `as_variant`'s (what that variant's score stage writes)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synthetic, "Y_PRED", y_pred)
        run = synthetic.write_everything(root)
    result = run_f07_stage("score", root)
    assert result.returncode == 0, result.stderr
    target = scores_of(root, as_variant)
    if target != run / "metrics" / "metrics_per_model.csv":
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "metrics" / "metrics_per_model.csv", target)


def seal_and_serve(root: Path) -> None:
    """Seal the package for real, point the manifest at its digest, and record what the
    serve stage records once the server verified it and every model is ready."""
    digest = reseal_package(root / "executions" / "06_packaging" / "v601")["seal"]["digest"]
    run = root / "executions" / "07_deployrun" / "v701"
    edit_json(run / "manifest.json", lambda manifest: manifest.update(package_digest=digest))
    write_json_atomic(run / "serve.json", {
        "package_digest": digest, "seal": {"verified": True, "digest": digest, "problems": []},
        "served_digest": digest,
        "ready": {"status": 200, "body": {"ready": True, "models": {m: {"state": "ready"} for m in MODELS}}}})


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    write_json_atomic(path, data)


def set_params(root: Path, gates: dict | None = None, **entry) -> None:
    """deployrun.v701 with these gates (and entry keys), next to a baseline variant v700."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    v701 = params["deployrun"]["v701"]
    v701.update(entry)
    if gates is not None:
        v701["gates"] = gates
    params["deployrun"]["v700"] = {**v701, "gates": None}
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


def build(root: Path, y_pred: list) -> Path:
    """v701 predicting `y_pred`, served and scored, and the scores of its baseline
    v700 (BASELINE_Y_PRED)."""
    score(root, BASELINE_Y_PRED, "v700")
    score(root, y_pred, "v701")
    seal_and_serve(root)
    set_params(root)
    return root


@pytest.fixture(scope="module")
def passing_run(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("verdict") / "repo", FINITE_Y_PRED)


@pytest.fixture
def root(passing_run, tmp_path) -> Path:
    """A private copy of the passing run, for a test to change."""
    return Path(shutil.copytree(passing_run, tmp_path / "repo"))


def run_dir(root: Path) -> Path:
    return root / "executions" / "07_deployrun" / "v701"


def verdict_of(root: Path) -> dict:
    deployrun = yaml.safe_load((root / "params.yaml").read_text())["deployrun"]
    return judge(load_deployrun("v701", deployrun["v701"], root / "executions"), deployrun)


def failed(verdict: dict) -> list[str]:
    return [c["name"] for c in verdict["checks"] if c["passed"] is False]


def named(verdict: dict, name: str) -> dict:
    return next(c for c in verdict["checks"] if c["name"] == name)


# ------------------------------------------------------------------ checks that always apply

def test_a_complete_run_without_gates_passes_every_check(root):
    verdict = verdict_of(root)
    assert [c["name"] for c in verdict["checks"]] == ALWAYS + UNJUDGED
    assert (verdict["passed"], verdict["failed_checks"], verdict["passed_checks"], verdict["not_measured"]) == (
        True, 0, len(ALWAYS) - len(NOT_MEASURED), len(NOT_MEASURED) + len(UNJUDGED))
    assert [c["name"] for c in verdict["checks"] if c["passed"] is None] == NOT_MEASURED + UNJUDGED
    assert "not judged: deployrun.v701.gates.min.f1 is not set" in named(verdict, "gate min f1")["detail"]
    assert "no t0" in named(verdict, f"coverage: {V503}")["detail"]
    assert verdict["variant"] == "v701" and verdict["baseline"] is None
    assert all(set(c) == {"name", "passed", "measured", "expected", "detail"} for c in verdict["checks"])
    assert named(verdict, "every window answered")["measured"] == 8
    assert named(verdict, "every prediction logged")["expected"] == "== 24 (8 windows x 3 models)"
    digest = json.loads((run_dir(root) / "manifest.json").read_text())["package_digest"]
    assert named(verdict, "package unchanged since served")["measured"] == digest


@pytest.mark.parametrize("change, detail", [
    (lambda package: (package / "datasets" / "v402" / "04_targetengineering_dataset.parquet").write_bytes(b"x"),
     "changed: datasets/v402/04_targetengineering_dataset.parquet"),
    (lambda package: (package / "datasets" / "v401" / "stray.txt").write_text("x"),
     "extra: datasets/v401/stray.txt"),
    (lambda package: write_json_atomic(package / PACKAGE_METADATA, seal_package(
        package, {**json.loads((package / PACKAGE_METADATA).read_text()), "variant": "v609"})),
     "was rebuilt since it was served"),
])
def test_a_package_changed_after_serving_fails_the_seal_check_now(root, change, detail):
    change(root / "executions" / "06_packaging" / "v601")
    verdict = verdict_of(root)
    assert failed(verdict) == ["package unchanged since served"] and verdict["passed"] is False
    assert detail in named(verdict, "package unchanged since served")["detail"]


@pytest.mark.parametrize("seal, detail", [
    ({"verified": False, "problems": ["changed: models/x/model.h5"]}, "broken (changed: models/x/model.h5)"),
    ({"digest": "0" * 64}, "different serve runs"),
])
def test_a_seal_not_verified_when_served_fails(root, seal, detail):
    edit_json(run_dir(root) / "serve.json", lambda data: data["seal"].update(seal))
    verdict = verdict_of(root)
    assert failed(verdict) == ["seal verified when served"]
    assert detail in named(verdict, "seal verified when served")["detail"]


def test_a_server_reporting_another_package_fails(root):
    edit_json(run_dir(root) / "serve.json", lambda data: data.update(served_digest="0" * 64))
    verdict = verdict_of(root)
    assert failed(verdict) == ["server loaded the package"]
    assert "serves another package" in named(verdict, "server loaded the package")["detail"]


def test_a_model_that_did_not_become_ready_fails(root):
    def one_model_failed(serve):
        serve["ready"] = {"status": 503, "body": {"ready": False, "models": {
            **serve["ready"]["body"]["models"], V502: {"state": "failed"}}}}
    edit_json(run_dir(root) / "serve.json", one_model_failed)
    verdict = verdict_of(root)
    assert failed(verdict) == ["server ready", f"model ready: {V502}"]
    assert named(verdict, "server ready")["measured"] == 503
    assert named(verdict, f"model ready: {V502}")["measured"] == "failed"


@pytest.mark.parametrize("summary, failing, detail", [
    ({"windows_answered": 7}, ["every window answered", "every prediction logged"],
     "1 of 8 windows sent got no answer"),
    ({"windows_sent": 7, "windows_answered": 7}, ["every replay window sent", "every prediction logged"],
     "7 of the 8 windows of the replay were sent"),
    ({"fault": {"kind": "server exited", "reason": "the server process exited with code -9 (killed by SIGKILL)",
                "batch": 2, "first_t0": synthetic.T0[4], "windows": 4, "exit_code": -9, "client_error": "x",
                "stderr_tail": ["Traceback", "MemoryError"]}},
     ["replay completed"], "exited with code -9 (killed by SIGKILL) at batch 2"),
    ({"windows_with_events": 0}, ["replay holds events"], "none of the 8 windows sent held an event"),
])
def test_a_runtime_fault_unsent_or_unanswered_windows_fail(root, summary, failing, detail):
    edit_json(run_dir(root) / "logs" / "run_summary.json", lambda data: data.update(summary))
    verdict = verdict_of(root)
    assert failed(verdict) == failing
    assert any(detail in named(verdict, name)["detail"] for name in failing)


def test_rows_missing_from_the_log_file_fail_even_when_the_writer_counted_them(root):
    log = run_dir(root) / "logs" / "raw_predictions.parquet"
    pq.write_table(pq.read_table(log).slice(0, 23), log)
    verdict = verdict_of(root)
    # the decisions were checked on the 8 rows of v503 the log held then: the 7 it holds now
    # are counted here, so that check fails too
    assert failed(verdict) == ["every prediction logged", f"logged decisions: {V503}"]
    assert "has 23 rows instead of 24" in named(verdict, "every prediction logged")["detail"]
    assert "8 rows checked, but the log holds 7" in named(verdict, f"logged decisions: {V503}")["detail"]


def test_decisions_other_than_the_references_fail_naming_the_windows(root):
    def differ(reference):
        reference["models"][V501].update(decision_mismatches=1, first_decision_mismatches=[
            {"t0": synthetic.T0[1], "server_probability": 0.8, "reference_probability": 0.8, "server_decision": 0,
             "reference_decision": 1}])
    edit_json(run_dir(root) / "reference.json", differ)
    verdict = verdict_of(root)
    assert failed(verdict) == [f"reference decisions: {V501}"]
    detail = named(verdict, f"reference decisions: {V501}")["detail"]
    assert "1 of 6 windows decided otherwise at threshold 0.5 (model_summary.json)" in detail
    assert f"t0 {synthetic.T0[1]}: server p=0.8 y_pred=0, reference p=0.8 decides 1" in detail


def test_logged_decisions_inconsistent_with_their_probability_fail(root):
    def inconsistent(reference):
        reference["models"][V502]["decisions"].update(inconsistent=2, first_inconsistent=[
            {"t0": synthetic.T0[0], "probability": 0.9, "y_pred": 0, "expected": 1}])
    edit_json(run_dir(root) / "reference.json", inconsistent)
    verdict = verdict_of(root)
    assert failed(verdict) == [f"logged decisions: {V502}"]
    assert named(verdict, f"logged decisions: {V502}")["measured"] == 2
    assert "2 of 8 logged rows disagree" in named(verdict, f"logged decisions: {V502}")["detail"]


def test_a_transport_deciding_otherwise_fails_its_model(root):
    edit_json(run_dir(root) / "logs" / "equivalence.json",
              lambda data: data["models"][V501].update(decision_mismatch=3, passed=False))
    verdict = verdict_of(root)
    assert failed(verdict) == [f"transport: {V501}"]
    assert "3 windows with another y_pred than in-process" in named(verdict, f"transport: {V501}")["detail"]


def test_a_server_differing_from_the_reference_fails_naming_the_windows(root):
    def differ(reference):
        reference["models"][V501].update(mismatches=2, max_abs_diff=0.31, first_mismatches=[
            {"t0": synthetic.T0[1], "events": [3], "server": 0.8, "reference": 0.49}])
    edit_json(run_dir(root) / "reference.json", differ)
    verdict = verdict_of(root)
    assert failed(verdict) == [f"reference equivalence: {V501}"]
    assert "2 of 6 windows differ" in named(verdict, f"reference equivalence: {V501}")["detail"]
    assert "server 0.8, reference 0.49" in named(verdict, f"reference equivalence: {V501}")["detail"]


def test_f04_windows_of_the_replay_without_a_prediction_fail_coverage(root):
    edit_json(run_dir(root) / "reference.json", lambda reference: reference["models"][V502]["coverage"].update(
        missing=2, first_missing_t0=[synthetic.T0[4], synthetic.T0[5]]))
    verdict = verdict_of(root)
    assert failed(verdict) == [f"coverage: {V502}"]
    assert "2 of the 6 F04 windows of the replay got no prediction" in named(verdict, f"coverage: {V502}")["detail"]


def test_metrics_over_a_biased_subset_fail_the_default_scored_share(root):
    params = yaml.safe_load((root / "params.yaml").read_text())
    del params["deployrun"]["v701"]["min_scored_share"]  # the default, 0.95
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    verdict = verdict_of(root)
    assert failed(verdict) == [f"scored share: {V503}"]
    check = named(verdict, f"scored share: {V503}")
    assert check["measured"] == pytest.approx(5 / 7, abs=1e-6)
    assert "2 predictions fell on OW contents that occur with both labels (1 ambiguous contents)" in check["detail"]
    assert "no t0: t0 not recoverable" in check["detail"]


def test_a_non_finite_output_fails_its_model(tmp_path):
    root = build(tmp_path, synthetic.Y_PRED)  # v502: two non-finite outputs
    verdict = verdict_of(root)
    assert failed(verdict) == [f"finite outputs: {V502}"]
    assert named(verdict, f"finite outputs: {V502}")["measured"] == 2


@pytest.mark.parametrize("result", [
    {"max_abs_diff": 1e-3, "passed": True},  # the recorded flag is not what decides
    {"max_abs_diff": 0.0, "non_finite_mismatch": 1, "passed": False},
])
def test_equivalence_beyond_tolerance_fails_its_model(root, result):
    edit_json(run_dir(root) / "logs" / "equivalence.json", lambda data: data["models"][V503].update(result))
    verdict = verdict_of(root)
    assert failed(verdict) == [f"transport: {V503}"]
    assert named(verdict, f"transport: {V503}")["expected"] == "<= 1e-06, same y_pred"


def test_equivalence_not_measured_is_said_and_does_not_fail(root):
    set_params(root, check_equivalence=False)
    write_json_atomic(run_dir(root) / "logs" / "equivalence.json", {"enabled": False})
    verdict = verdict_of(root)
    assert verdict["passed"] is True and verdict["not_measured"] == len(NOT_MEASURED) + len(UNJUDGED) + 1
    check = named(verdict, "transport")
    assert check["passed"] is None and "not measured: deployrun.v701.check_equivalence is false" in check["detail"]


@pytest.mark.parametrize("file, content, message", [
    ("serve.json", None, "serve.json is missing: run `dvc repro serve@v701` first"),
    ("serve.json", {"seal_verified": True}, "lacks ['seal', 'served_digest', 'ready']"),
    ("logs/run_summary.json", {"windows_sent": "8", "windows_answered": 8, "batches": 2, "models": {}, "fault": None,
                               "log": "logs/raw_predictions.parquet", "first_t0": 0, "last_t0": 0},
     "'windows_sent' is '8', not a count: run `dvc repro infer@v701` first"),
    ("reference.json", None, "reference.json is missing: run `dvc repro reference@v701` first"),
])
def test_missing_or_malformed_evidence_is_an_error_not_a_verdict(root, file, content, message):
    path = run_dir(root) / file
    if content is None:
        path.unlink()
    else:
        write_json_atomic(path, content)
    with pytest.raises(DeployRunError, match=re.escape(message)):
        verdict_of(root)


# ------------------------------------------------------------------ gates

def gate_checks(verdict: dict) -> list[dict]:
    return verdict["checks"][len(ALWAYS):]


def test_min_gate_fails_the_model_below_it_only(root):
    set_params(root, gates={"min": {"recall": 0.5}})
    verdict = verdict_of(root)
    assert [c["name"] for c in gate_checks(verdict)] == [f"gate min recall 0.5: {m}" for m in (V501, V502, V503)] + [
        "gate min f1"]
    assert failed(verdict) == [f"gate min recall 0.5: {V502}"]
    check = named(verdict, f"gate min recall 0.5: {V502}")
    assert (check["measured"], check["expected"], check["detail"]) == (0.0, ">= 0.5", "recall = 0")


def test_gates_restricted_to_some_models_skip_the_others(root):
    set_params(root, gates={"min": {"recall": 0.5}, "models": [V501, V503]})
    verdict = verdict_of(root)
    assert verdict["passed"] is True
    assert [c["name"] for c in gate_checks(verdict)] == [f"gate min recall 0.5: {m}" for m in (V501, V503)] + [
        f"gate min recall: {V502}", "gate min f1"]
    left_out = named(verdict, f"gate min recall: {V502}")
    assert left_out["passed"] is None and "left out of deployrun.v701.gates.models" in left_out["detail"]


def test_a_gate_switched_off_is_shown_off_never_passed(root):
    set_params(root, gates={"min": {"recall": None, "f1": 0.5}})
    verdict = verdict_of(root)
    off = [c for c in gate_checks(verdict) if c["name"].startswith("gate min recall")]
    assert [c["name"] for c in off] == [f"gate min recall None: {m}" for m in (V501, V502, V503)]
    assert all(c["passed"] is None and c["expected"] == "off" and "off: deployrun.v701.gates.min.recall is null"
               in c["detail"] for c in off)
    assert failed(verdict) == [f"gate min f1 0.5: {V502}"]


def test_the_stage_writes_the_verdicts_headline_as_a_dvc_metric(root):
    set_params(root, gates={"min": {"recall": 0.5}})
    assert run_f07_stage("verdict", root).returncode == 0
    assert json.loads((run_dir(root) / layout.VERDICT_METRICS).read_text()) == {"passed": 0, "failed": 1}


def test_max_gate_on_a_count_fails_the_models_above_it(root):
    set_params(root, gates={"max": {"FP": 0}})
    verdict = verdict_of(root)
    assert failed(verdict) == [f"gate max FP 0: {V501}", f"gate max FP 0: {V503}"]
    assert named(verdict, f"gate max FP 0: {V503}")["measured"] == 1


def test_max_drop_compares_each_model_with_the_same_model_of_the_baseline(root):
    set_params(root, gates={"baseline": "v700", "max_drop": {"f1": 0.02}})
    verdict = verdict_of(root)
    assert verdict["baseline"] == "v700"
    assert failed(verdict) == [f"gate max_drop f1 0.02 vs v700: {V503}"]
    check = named(verdict, f"gate max_drop f1 0.02 vs v700: {V503}")
    assert check["measured"] == pytest.approx(1 / 3, abs=1e-9)
    assert check["detail"] == "f1 0.6667 here, 1 in v700 (drop 0.3333)"
    assert named(verdict, f"gate max_drop f1 0.02 vs v700: {V501}")["measured"] == 0


def test_every_gate_passing_passes_the_verdict(root):
    set_params(root, gates={"min": {"recall": 0.5, "referenced": 5}, "max": {"FP": 1}, "baseline": "v700",
                            "max_drop": {"f1": 0.34, "precision": 0.5}, "models": [V501, V503]})
    verdict = verdict_of(root)
    assert verdict["passed"] is True and verdict["failed_checks"] == 0
    assert [c["name"] for c in gate_checks(verdict)][:10:2] == [  # kinds in order, then metrics in order
        f"gate min recall 0.5: {V501}", f"gate min referenced 5: {V501}", f"gate max FP 1: {V501}",
        f"gate max_drop precision 0.5 vs v700: {V501}", f"gate max_drop f1 0.34 vs v700: {V501}"]


def test_a_model_the_baseline_did_not_score_fails_its_drop_gate(root):
    board = scores_of(root, "v700")
    lines = board.read_text().splitlines(keepends=True)
    board.write_text("".join(line for line in lines if "v503" not in line))
    set_params(root, gates={"baseline": "v700", "max_drop": {"f1": 0.5}})
    verdict = verdict_of(root)
    assert failed(verdict) == [f"gate max_drop f1 0.5 vs v700: {V503}"]
    assert "baseline v700 did not score this model" in named(verdict, failed(verdict)[0])["detail"]


def test_a_baseline_not_scored_yet_is_an_error_naming_the_stage(root):
    scores_of(root, "v700").unlink()
    set_params(root, gates={"baseline": "v700", "max_drop": {"f1": 0.02}})
    with pytest.raises(DeployRunError, match=r"v700/metrics/metrics_per_model\.csv is missing: .*run `dvc repro score@v700`"):
        verdict_of(root)


# v502 outputs NaN on the three positive windows of v401 (1, 2, 5) and 0 elsewhere: none
# of its scored windows is positive and none is predicted positive, so its precision,
# recall and f1 are 0/0
NO_POSITIVE_Y_PRED = [FINITE_Y_PRED[0], [0, None, None, 0, 0, None, 0, 0], FINITE_Y_PRED[2]]


def test_a_gate_on_an_undefined_rate_fails_naming_why(root):
    """A floor of 0 passes a 0; an undefined rate has no value to meet it: it fails, and
    says why. A drop from a baseline where the rate is undefined cannot be measured."""
    own = scores_of(root, "v701").read_bytes()  # v502: precision undefined, recall and f1 0
    score(root, NO_POSITIVE_Y_PRED, "v700")
    scores_of(root, "v701").write_bytes(own)
    set_params(root, gates={"min": {"precision": 0.0, "recall": 0.0, "f1": 0.0}, "baseline": "v700",
                            "max_drop": {"recall": 1.0}})
    verdict = verdict_of(root)
    gates = [c for c in gate_checks(verdict) if c["passed"] is False]
    assert [c["name"] for c in gates] == [f"gate min precision 0.0: {V502}", f"gate max_drop recall 1.0 vs v700: {V502}"]
    assert all(c["measured"] is None for c in gates)
    assert gates[0]["detail"] == "precision undefined: no window predicted positive: no value to judge against the bound"
    assert gates[1]["detail"] == ("recall 0 here, but recall undefined in v700: no positive window in the reference: "
                                  "no drop can be measured")
    shutil.copyfile(scores_of(root, "v700"), scores_of(root, "v701"))  # the scores of NO_POSITIVE_Y_PRED here
    set_params(root, gates={"min": {"recall": 0.0, "f1": 0.0}})
    details = {c["name"]: c["detail"] for c in gate_checks(verdict_of(root)) if c["passed"] is False}
    assert details == {
        f"gate min recall 0.0: {V502}": "recall undefined: no positive window in the reference: no value to judge "
                                        "against the bound",
        f"gate min f1 0.0: {V502}": "f1 undefined: no window predicted positive and no positive window in the "
                                    "reference: no value to judge against the bound"}


def test_a_drop_exactly_at_the_limit_passes_despite_float_noise():
    bound = Bound("max_drop", "f1", 0.02)
    assert 0.63 - 0.61 > 0.02  # the noise this guards against
    assert drop(0.61, 0.63) == 0.02 and bound.holds(drop(0.61, 0.63))
    assert not bound.holds(drop(0.6099, 0.63))
    assert drop(0.7, 0.6) == pytest.approx(-0.1)  # a rise is a negative drop


# ------------------------------------------------------------------ configuration errors

DEPLOYRUN = {"v700": {"parent_variant_f06": "v601"}, "v701": {"parent_variant_f06": "v601"}}


def gates_of(gates) -> Gates:
    return validate_gates("v701", {"parent_variant_f06": "v601", "gates": gates}, DEPLOYRUN, synthetic.MODELS)


@pytest.mark.parametrize("gates, message", [
    ({"min": {"recal": 0.5}}, "deployrun.v701.gates.min.recal: unknown metric 'recal'; known: TP, TN, FP, FN, "
                              "precision, recall, f1, "),
    ({"min": {"recal": 0.5}}, "(did you mean 'recall'?)"),
    ({"max": {"fp": 100}}, "deployrun.v701.gates.max.fp: unknown metric 'fp'; known: TP, "),
    ({"max": {"fp": 100}}, "(did you mean 'FP'?)"),
    ({"min": {"recall": 1.01}}, "deployrun.v701.gates.min.recall: 1.01 is outside [0, 1]; recall is a rate"),
    ({"min": {"f1": -0.1}}, "deployrun.v701.gates.min.f1: -0.1 is outside [0, 1]"),
    ({"min": {"f1": float("nan")}}, "deployrun.v701.gates.min.f1: nan is outside [0, 1]"),
    ({"max": {"FP": -1}}, "deployrun.v701.gates.max.FP: -1 is not a whole number >= 0; FP counts predictions"),
    ({"max": {"FP": 2.5}}, "deployrun.v701.gates.max.FP: 2.5 is not a whole number >= 0"),
    ({"min": {"recall": "high"}}, "deployrun.v701.gates.min.recall: 'high' is not a number; give a rate"),
    ({"min": {"recall": True}}, "deployrun.v701.gates.min.recall: True is not a number"),
    ({"min": {"recall": "1e-3"}}, "write it with a decimal point"),
    ({"min": {"recall": 0.8}, "max": {"recall": 0.5}}, "deployrun.v701.gates: min.recall = 0.8 is above "
                                                       "max.recall = 0.5"),
    ({"max_drop": {"f1": 0.02}}, "deployrun.v701.gates.max_drop: needs deployrun.v701.gates.baseline, the F07 "
                                 "variant to compare with (known: v700)"),
    ({"max_drop": {"FP": 1}, "baseline": "v700"}, "deployrun.v701.gates.max_drop.FP: max_drop compares rates"),
    ({"max_drop": {"f1": 1.5}, "baseline": "v700"}, "deployrun.v701.gates.max_drop.f1: 1.5 is outside [0, 1]"),
    ({"max_drop": {"f1": 0.02}, "baseline": "v799"}, "deployrun.v701.gates.baseline: unknown F07 variant 'v799'; "
                                                     "known: v700"),
    ({"max_drop": {"f1": 0.02}, "baseline": "v701"}, "deployrun.v701.gates.baseline: v701 cannot be its own "
                                                     "baseline"),
    ({"baseline": "v700"}, "deployrun.v701.gates.baseline: set, but no deployrun.v701.gates.max_drop compares"),
    ({"min": {"recall": 0.5}, "models": ["v401/v501/nope"]},
     f"deployrun.v701.gates.models[0]: unknown model 'v401/v501/nope'; package v601 serves: {V501}, {V502}, {V503}"),
    ({"min": {"recall": 0.5}, "models": [V501, V501]}, "deployrun.v701.gates.models[1]: "
                                                       f"{V501} is listed twice"),
    ({"min": {"recall": 0.5}, "models": V501}, "deployrun.v701.gates.models: must be a non-empty list"),
    ({"models": [V501]}, "deployrun.v701.gates.models: restricts the gates to some models, but no gate is set"),
    ({"mni": {"recall": 0.5}}, "deployrun.v701.gates.mni: unknown key; known: min, max, max_drop, baseline, "
                               "models (did you mean 'min'?)"),
    ({"min": [0.5]}, "deployrun.v701.gates.min: must map metric names to bounds, e.g. min: {recall: 0.5}"),
    ("strict", "deployrun.v701.gates: must be a mapping"),
])
def test_configuration_errors_name_the_variant_key_and_fix(gates, message):
    with pytest.raises(GateError) as error:
        gates_of(gates)
    assert message in str(error.value)


def test_no_gates_and_empty_gates_gate_nothing():
    assert gates_of(None) == Gates() and gates_of({}) == Gates()
    parsed = gates_of({"max": {"FP": 10}, "min": {"f1": 0.5, "TP": 1}})
    assert [(b.kind, b.metric, b.limit) for b in parsed.bounds] == [
        ("min", "TP", 1), ("min", "f1", 0.5), ("max", "FP", 10)]


# ------------------------------------------------------------------ the stage, as DVC runs it

def test_stage_writes_a_failed_verdict_naming_the_gate_and_the_same_bytes_again(root):
    set_params(root, gates={"min": {"precision": 0.999}})
    path = run_dir(root) / "verdict.json"
    result = run_f07_stage("verdict", root)
    assert result.returncode == 0, result.stderr  # a failed verdict is a result, not an error
    assert "verdict@v701: FAILED" in result.stdout
    assert f"FAILED gate min precision 0.999: {V501}: precision = 0.6667" in result.stdout
    first = path.read_bytes()
    verdict = json.loads(first)
    assert verdict["passed"] is False and verdict["failed_checks"] == 3
    assert first.endswith(b"}\n") and str(root) not in first.decode()
    assert run_f07_stage("verdict", root).returncode == 0 and path.read_bytes() == first
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left


def test_stage_refuses_a_configuration_error_without_writing_a_verdict(root):
    set_params(root, gates={"min": {"recal": 0.5}})
    result = run_f07_stage("verdict", root)
    assert result.returncode == 1
    assert "deployrun.v701.gates.min.recal: unknown metric 'recal'" in result.stderr
    assert not (run_dir(root) / "verdict.json").exists()
