"""The F07 verdict: does the run pass, and if not, why (`verdict.json`, a DVC metric).

A run passes when no check fails. Every check is evidence that was observed, never a
constant written by the code it judges:
- the package: the seal as the serve stage verified it and the digest the server said
  it loaded (serve.json), and the seal verified again here, because the verdict vouches
  for the package as it is on disk now (the stage depends on every package file);
- the server: the GET /ready answer the serve stage observed, per model;
- the replay (run_summary.json, the log file): no runtime fault (a server that exited,
  hung, or answered an error, named with its exit code, stderr and the batch); every
  window of the replay sent, counted by arithmetic on the package's span; every window
  answered (answers counted after their lengths were checked); a logged row per answered
  window and model, counted in the log file; no non-finite output;
- the independent reference (reference.json, f07_validation/reference.py): per model,
  the server's answers against the model scored on the F04 rows' own windows by code
  that shares nothing with the runtime, its logged decisions against the reference's own
  at the threshold the model's summary declares, every logged decision against its own
  logged probability (the whole log), and the coverage of the F04 windows that lie in
  the replay, with the join's diagnosis when they were missed;
- the scored share (metrics_per_model.csv): the predictions on F04 windows that got a
  label, at least `min_scored_share`, so metrics over a biased subset fail;
- transport: the server against the same runtime code in-process (equivalence.json), a
  check of the HTTP hop alone, on every k-th batch of a long replay
  (``equivalence_sample_windows``). A run with `check_equivalence: false` did not
  measure it: that check is `passed: null` ("not measured") and does not fail the run;
- the gates of params.yaml (f07_validation.gates), one check per gate and model; a gate
  switched off (null) is shown off, and a quality floor left unset "not judged": neither
  passes nor fails the run.

Each check is `{name, passed, measured, expected, detail}`. The top level carries
`passed` and the counts of checks so that `dvc metrics show` prints them per variant
(it skips lists and nulls, so the checks themselves stay out of its table).

A missing or malformed input is not a failed check but an error naming the file and
the stage to rerun: a verdict is only written from complete evidence.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from contract import layout
from contract.defaults import DEFAULT_QUALITY_FLOORS
from contract.files import write_json_atomic
from contract.model_key import KEY_COLUMNS
from contract.predictions import model_keys
from contract.row_stream import BATCH_ROWS
from contract.seal import verify_seal
from f07_validation.deployrun import DeployRun, DeployRunError, read_json
from f07_validation.gates import Gates, drop, read_model_metrics, validate_gates
from f07_validation.reference import describe_mismatch
from f07_validation.scoring import undefined_reasons
from f07_validation.timefmt import utc_iso


def check(name: str, passed: bool | None, measured, expected: str, detail: str = "") -> dict:
    return {"name": name, "passed": passed, "measured": measured, "expected": expected, "detail": detail}


def _require(data, keys: tuple[str, ...], path: Path, fix: str, counts: tuple[str, ...] = ()) -> dict:
    """`data` with every key of `keys`, and those of `counts` whole numbers >= 0."""
    if not isinstance(data, dict):
        raise DeployRunError(f"{path} must hold a JSON object: {fix}")
    missing = [key for key in keys + counts if key not in data]
    if missing:
        raise DeployRunError(f"{path} lacks {missing}: {fix}")
    for key in counts:
        if type(data[key]) is not int or data[key] < 0:
            raise DeployRunError(f"{path}: '{key}' is {data[key]!r}, not a count: {fix}")
    return data


def seal_checks(run: DeployRun, serve: dict) -> list[dict]:
    """The seal as the serve stage measured it, the digest the server said it loaded,
    and the seal now (verified again on disk), all against the digest the manifest was
    made for."""
    digest = run.manifest.package_digest
    package = run.manifest.parent_variant_f06
    rerun = f"rerun F07 (`dvc repro serve@{run.variant}`)"
    seal = serve["seal"] if isinstance(serve["seal"], dict) else {}
    if seal.get("verified") is not True:
        served_detail = (f"the serve stage found the seal of package {package} broken "
                         f"({'; '.join(seal.get('problems') or ['no result recorded'])}); {rerun}")
    elif seal.get("digest") != digest:
        served_detail = (f"the serve stage verified digest {seal.get('digest')} but manifest.json was made for "
                         f"{digest}: they come from different serve runs; {rerun}")
    else:
        served_detail = f"package {package}: every file verified, digest {digest}"
    served_ok = seal.get("verified") is True and seal.get("digest") == digest
    loaded = serve["served_digest"]
    loaded_detail = (f"GET /models reports package digest {loaded}" if loaded == digest else
                     f"GET /models reports package digest {loaded}, not the manifest's {digest}: the server "
                     f"on the port serves another package; {rerun}")

    now = verify_seal(run.manifest.package_dir)
    if now.ok and now.digest == digest:
        now_detail = f"package {package} verified again: same digest as served"
    elif now.ok:
        now_detail = (f"package {package} was rebuilt since it was served (digest {now.digest}); "
                      f"{rerun} to validate the package as it is now")
    else:
        differences = [f"{label} {', '.join(paths)}" for label, paths in
                       (("changed:", now.changed), ("missing:", now.missing), ("extra:", now.extra)) if paths]
        now_detail = (f"package {package} no longer verifies ({'; '.join(now.problems + differences)}); "
                      f"restore it (`dvc checkout`) or rebuild it and {rerun}")
    return [
        check("seal verified when served", served_ok, seal.get("digest"), f"verified, == {digest}", served_detail),
        check("server loaded the package", loaded == digest, loaded, f"== {digest}", loaded_detail),
        check("package unchanged since served", now.ok and now.digest == digest, now.digest, f"== {digest}",
              now_detail),
    ]


def readiness_checks(run: DeployRun, serve: dict) -> list[dict]:
    """The GET /ready answer the serve stage observed: 200 with ``ready: true``, and each
    model in state ``ready`` (loaded, warmed up)."""
    ready = serve["ready"] if isinstance(serve["ready"], dict) else {}
    status, body = ready.get("status"), ready.get("body") if isinstance(ready.get("body"), dict) else {}
    states = body.get("models") if isinstance(body.get("models"), dict) else {}
    ok = status == 200 and body.get("ready") is True
    checks = [check("server ready", ok, status, "200, ready: true",
                    "GET /ready answered 200, ready: true" if ok else
                    f"GET /ready answered {status} with ready: {body.get('ready')!r}; see serve@{run.variant}'s output")]
    for model in run.models:
        name = model.key
        state = (states.get(name) or {}).get("state")
        detail = ("" if state == "ready" else
                  "the GET /ready answer has no state for this model" if state is None else
                  f"the model did not load and warm up (state {state!r}); see serve@{run.variant}'s output")
        checks.append(check(f"model ready: {name}", state == "ready", state, "ready", detail))
    return checks


def replay_window_count(metadata: dict) -> int:
    """The windows a replay must send, by arithmetic on the package's span and regime
    (not by the client that sends them): grid starts ``origin + k*Tu`` whose whole OW
    lies in the replay (``first <= t0`` and ``t0 + OW*Tu <= last``)."""
    temporal, replay = metadata["temporal"], metadata["replay"]
    tu, origin = int(float(temporal["Tu"]["value"])), int(temporal["origin_segs"])
    ow = int(temporal["OW"]["value"]) * tu
    k_first = -((origin - int(replay["first_segs"])) // tu)
    k_last = (int(replay["last_segs"]) - ow - origin) // tu
    return max(0, k_last - k_first + 1)


def describe_fault(fault: dict, variant: str) -> str:
    tail = " | ".join(line.strip() for line in fault.get("stderr_tail", [])[-3:] if line.strip())
    return (f"{fault['reason']} at batch {fault['batch']} (first t0 {utc_iso(fault['first_t0'])}, "
            f"{fault['windows']} windows)" + (f"; server stderr: {tail}" if tail else "")
            + f"; what was logged is in {layout.PREDICTIONS_PARTIAL}; after a transient fault replay again "
              f"with `dvc repro -f -s infer@{variant}`")


def delivery_checks(run: DeployRun, summary: dict, logged: int, expected: int) -> list[dict]:
    """What the replay did: no runtime fault; every window of the replay sent (and at
    least one: a run that sent nothing proves nothing); an answer of one probability
    or null per window and model (counted from the answers, lengths checked); a logged
    row per answered window and model (``logged``, counted in the log file); no model
    answering with a non-finite output."""
    fault = summary["fault"]
    sent, answered = summary["windows_sent"], summary["windows_answered"]
    package = run.manifest.parent_variant_f06
    if expected == 0:
        sent_detail = ("the replay holds no complete observation window; widen the replay time range of "
                       f"package {package}")
    elif sent != expected:
        sent_detail = (f"{sent} of the {expected} windows of the replay were sent"
                       + (" before the runtime fault" if fault else ""))
    else:
        sent_detail = f"{sent} windows, from {utc_iso(summary['first_t0'])} to {utc_iso(summary['last_t0'])}"
    n_models = len(run.models)
    rows = answered * n_models
    checks = [
        check("replay completed", fault is None, fault["kind"] if fault else None, "no runtime fault",
              describe_fault(fault, run.variant) if fault else f"{summary['batches']} batches, all answered"),
        check("every replay window sent", expected > 0 and sent == expected, sent,
              f"== {expected} (grid windows whose OW lies in the replay)", sent_detail),
        check("every window answered", sent > 0 and answered == sent, answered, f"== {sent} (windows sent)",
              f"{sent} windows sent, all answered" if answered == sent else
              f"{sent - answered} of {sent} windows sent got no answer"),
        check("every prediction logged", logged == rows, logged, f"== {rows} ({answered} windows x {n_models} models)",
              f"rows of {summary['log']}" if logged == rows else
              f"{summary['log']} has {logged} rows instead of {rows}"),
    ]
    per_model = summary["models"] if isinstance(summary["models"], dict) else {}
    for model in run.models:
        name = model.key
        non_finite = (per_model.get(name) or {}).get("non_finite")
        detail = ("" if non_finite == 0 else
                  "run_summary.json has no non_finite count for this model" if non_finite is None else
                  f"{non_finite} windows got a NaN or infinite output (logged as null, never as 0)")
        checks.append(check(f"finite outputs: {name}", non_finite == 0, non_finite, "== 0", detail))
    return checks


def event_checks(run: DeployRun, summary: dict) -> list[dict]:
    """The replay sent at least one window holding an event (counted by the client as it
    sent them). A time range whose F02 rows hold no event gives only empty windows: every
    other check can pass on them (each model answers its one empty-window value, the
    reference agrees) while they judge nothing of the models, and precision, recall and
    F1 are undefined."""
    with_events = summary.get("windows_with_events")
    if type(with_events) is not int or with_events < 0:
        raise DeployRunError(f"{run.path(layout.RUN_SUMMARY)} lacks a count of windows_with_events: "
                             f"{run.stage_fix('infer')}")
    time_range = f"packaging.{run.manifest.parent_variant_f06}.replay.time_range"
    detail = (f"{with_events} of {summary['windows_sent']} windows sent held at least one event" if with_events else
              f"none of the {summary['windows_sent']} windows sent held an event: the replay's F02 rows hold "
              f"none, so no model was judged on an event and precision, recall and F1 are undefined; "
              f"choose a time range with events ({time_range})")
    return [check("replay holds events", with_events > 0, with_events, "> 0 windows with an event", detail)]


def transport_checks(run: DeployRun, equivalence: dict, path: Path) -> list[dict]:
    """Per model: the server's answers against the same runtime code in-process
    (``check_equivalence``), within the tolerance and non-finite at the same windows.
    Both sides share the runtime's vectorizer and model wrapper, so this judges only the
    HTTP hop (the reference checks judge the rest). Recomputed from the recorded
    differences, not taken from the recorded `passed`."""
    expected = "max |server - same runtime in-process| <= tolerance"
    if equivalence["enabled"] is not True:
        return [check("transport", None, None, expected,
                      f"not measured: deployrun.{run.variant}.check_equivalence is false")]
    fix = run.stage_fix("infer")
    _require(equivalence, ("tolerance", "windows_compared", "models"), path, fix)
    tolerance, compared = equivalence["tolerance"], equivalence["windows_compared"]
    stride = equivalence.get("stride_batches", 1)
    scope = (f"{compared} windows (1 batch in {stride} and the last, "
             f"deployrun.{run.variant}.equivalence_sample_windows)" if stride > 1 else f"{compared} windows")
    checks = []
    for model in run.models:
        name = model.key
        result = equivalence["models"].get(name)
        if not isinstance(result, dict) or "max_abs_diff" not in result:
            checks.append(check(f"transport: {name}", False, None, f"<= {tolerance}",
                                f"{layout.EQUIVALENCE} has no max_abs_diff for this model"))
            continue
        diff, mismatch = result["max_abs_diff"], result.get("non_finite_mismatch", 0)
        decisions = result.get("decision_mismatch")
        passed = compared > 0 and diff <= tolerance and mismatch == 0 and decisions == 0
        if compared == 0:
            detail = "no window was compared"
        elif decisions is None:
            detail = f"{layout.EQUIVALENCE} has no decision comparison for this model: {run.stage_fix('infer')}"
        elif mismatch or decisions:
            detail = "; ".join(part for part in (
                f"{mismatch} windows non-finite on one side only" if mismatch else "",
                f"{decisions} windows with another y_pred than in-process at threshold {model.threshold}"
                if decisions else "") if part) + f"; max |diff| {diff:.3g} over {scope}"
        else:
            detail = f"max |server - in-process| {diff:.3g}, same y_pred, over {scope}"
        checks.append(check(f"transport: {name}", passed, diff, f"<= {tolerance}, same y_pred", detail))
    return checks


def reference_checks(run: DeployRun, reference: dict) -> list[dict]:
    """Per model: the server's logged answers against the independent reference
    (f07_validation.reference: the model scored here on the F04 rows' own windows, inputs
    built from the F05 contract). Fails on any window beyond the tolerance, and when no
    window could be compared (nothing proves equivalence then)."""
    tolerance = reference["tolerance"]
    checks = []
    for model in run.models:
        name = f"reference equivalence: {model.key}"
        expected = f"0 windows with |server - reference| > {tolerance}"
        result = reference["models"].get(model.key)
        if not isinstance(result, dict):
            checks.append(check(name, False, None, expected, f"{layout.REFERENCE} has no comparison for this model"))
            continue
        objective = reference["objectives"][model.objective]
        compared, mismatches = result["compared"], result["mismatches"]
        scope = (f"a sample of {compared} of the {objective['matched']} F04 windows matched to the log "
                 f"(1 in {objective['stride']}, deployrun.{run.variant}.reference.sample_windows)"
                 if objective["sampled"] else f"all {compared} F04 windows matched to the log")
        scope += f", joined by {objective['join']}"
        if compared == 0:
            detail = (f"no F04 window of objective {model.objective} matched a logged prediction of this model: "
                      "nothing was compared")
        elif mismatches:
            first = "; ".join(describe_mismatch(m) for m in result["first_mismatches"][:3])
            detail = f"{mismatches} of {compared} windows differ (max |diff| {result['max_abs_diff']:.3g}); first: {first}"
        else:
            detail = f"max |server - reference| {result['max_abs_diff']:.3g} over {scope}"
        checks.append(check(name, compared > 0 and mismatches == 0, mismatches, expected, detail))
    return checks


def _threshold(result: dict) -> str:
    return f"threshold {result['threshold']} ({result['threshold_source']})"


def reference_decision_checks(run: DeployRun, reference: dict) -> list[dict]:
    """Per model: on the windows compared with the reference, the logged ``y_pred``
    against the reference's own decision, taken at the threshold it read from the
    model's summary. Every metric of the report is computed from ``y_pred``: a server
    deciding with another rule or threshold, or decisions logged against the wrong
    windows, fail here even when every probability is right."""
    checks = []
    for model in run.models:
        name = f"reference decisions: {model.key}"
        result = reference["models"].get(model.key)
        expected = "0 windows whose logged y_pred differs from the reference's decision"
        if not isinstance(result, dict) or "decision_mismatches" not in result:
            checks.append(check(name, False, None, expected,
                                f"{layout.REFERENCE} has no decision comparison for this model: "
                                f"{run.stage_fix('reference')}"))
            continue
        compared, wrong = result["compared"], result["decision_mismatches"]
        borderline = (f"; {result['decision_borderline']} windows within the tolerance of the threshold, where "
                      "either decision is right" if result["decision_borderline"] else "")
        if compared == 0:
            detail = "no window was compared with the reference"
        elif wrong:
            first = "; ".join(f"t0 {m['t0']}: server p={m['server_probability']} y_pred={m['server_decision']}, "
                              f"reference p={m['reference_probability']} decides {m['reference_decision']}"
                              for m in result["first_decision_mismatches"][:3])
            detail = f"{wrong} of {compared} windows decided otherwise at {_threshold(result)}; first: {first}"
        else:
            detail = f"all {compared} compared windows decided as the reference at {_threshold(result)}{borderline}"
        checks.append(check(name, compared > 0 and wrong == 0, wrong, expected, detail))
    return checks


def decision_consistency_checks(run: DeployRun, reference: dict, logged: dict[str, int]) -> list[dict]:
    """Per model, every row of the log (not a sample: the reference stage streams them
    all): ``y_pred`` is ``probability >= threshold`` (the summary's), and null exactly
    where the probability is. ``logged`` counts the model's rows as the verdict read
    them, so a pass over fewer rows fails."""
    checks = []
    for model in run.models:
        name = f"logged decisions: {model.key}"
        result = reference["models"].get(model.key)
        decisions = result.get("decisions") if isinstance(result, dict) else None
        rows = logged.get(model.key, 0)
        expected = f"0 of {rows} logged rows with a y_pred other than probability >= threshold"
        if not isinstance(decisions, dict):
            checks.append(check(name, False, None, expected, f"{layout.REFERENCE} has no decision consistency for "
                                                             f"this model: {run.stage_fix('reference')}"))
            continue
        wrong, checked = decisions["inconsistent"], decisions["rows"]
        if checked != rows:
            detail = f"{checked} rows checked, but the log holds {rows} of this model: {run.stage_fix('reference')}"
        elif wrong:
            first = "; ".join(f"t0 {m['t0']}: probability {m['probability']}, y_pred {m['y_pred']}, expected "
                              f"{m['expected']}" for m in decisions["first_inconsistent"][:3])
            detail = f"{wrong} of {checked} logged rows disagree with {_threshold(result)}; first: {first}"
        else:
            detail = f"all {checked} logged rows agree with {_threshold(result)}"
        checks.append(check(name, checked == rows and checked > 0 and wrong == 0, wrong, expected, detail))
    return checks


def logged_per_model(log: pq.ParquetFile) -> dict[str, int]:
    """The log's rows per model key, counted here in the file, so that the consistency
    check cannot pass on a pass over fewer rows than were logged."""
    counts: dict[str, int] = {}
    for batch in log.iter_batches(batch_size=BATCH_ROWS, columns=KEY_COLUMNS):
        for item in pc.value_counts(model_keys(batch)).to_pylist():
            counts[item["values"]] = counts.get(item["values"], 0) + item["counts"]
    return counts


def _join_cause(reference: dict, key: str) -> str:
    diagnosis = (reference["models"].get(key) or {}).get("join_diagnosis")
    return f"; cause: {diagnosis['detail']}" if isinstance(diagnosis, dict) else ""


def coverage_checks(run: DeployRun, reference: dict) -> list[dict]:
    """Per model: every F04 window whose OW lies in the replay got a logged prediction;
    when some did not, the reference's diagnosis of the join says why."""
    checks = []
    for model in run.models:
        name = f"coverage: {model.key}"
        coverage = (reference["models"].get(model.key) or {}).get("coverage")
        if not isinstance(coverage, dict):
            checks.append(check(name, False, None, "== 0", f"{layout.REFERENCE} has no coverage for this model"))
            continue
        if not coverage["measured"]:
            checks.append(check(name, None, None, "0 F04 windows of the replay without a prediction",
                                f"not measured: {coverage['reason']}"))
            continue
        missing, in_replay = coverage["missing"], coverage["in_replay"]
        detail = (f"all {in_replay} F04 windows of the replay got a prediction" if missing == 0 else
                  f"{missing} of the {in_replay} F04 windows of the replay got no prediction from this model "
                  f"(first t0: {', '.join(utc_iso(t) for t in coverage['first_missing_t0'])})"
                  + _join_cause(reference, model.key))
        checks.append(check(name, missing == 0, missing, f"== 0 of {in_replay} F04 windows in the replay", detail))
    return checks


def scored_share_checks(run: DeployRun, metrics: dict, scoring: dict, reference: dict, floor: float) -> list[dict]:
    """Per model: of its finite predictions on windows its F04 dataset holds, the share
    that got a label (a content with both labels gets none), at least ``floor``: metrics
    over a biased subset fail here and say why."""
    checks = []
    for model in run.models:
        name = f"scored share: {model.key}"
        row = metrics.get(model.key)
        if row is None:
            raise DeployRunError(f"{run.path(layout.METRICS_PER_MODEL)} has no row for model {model.key} of "
                                 f"manifest.json: {run.stage_fix('score')}")
        referenced, ambiguous = row["referenced"], row["ambiguous"]
        held = referenced + ambiguous
        share = referenced / held if held else 0.0
        objective = (reference.get("objectives") or {}).get(model.objective, {})
        join = objective.get("join", "?")
        why = [f"joined by {join}"]
        if join == "ow_content":
            why.append(f"no t0: {objective.get('join_note')}")
        if ambiguous:
            contents = (scoring.get("objectives") or {}).get(model.objective, {}).get("ambiguous_contents")
            why.append(f"{ambiguous} predictions fell on OW contents that occur with both labels "
                       f"({contents} ambiguous contents) and could not be scored")
        detail = (f"{referenced} of {held} predictions on F04 windows scored ({share:.1%}); " if held else
                  "no prediction fell on a window of the F04 dataset: nothing was scored; ") + "; ".join(why)
        if not (held > 0 and share >= floor):
            detail += _join_cause(reference, model.key)
        checks.append(check(name, held > 0 and share >= floor, round(share, 6),
                            f">= {floor} (deployrun.{run.variant}.min_scored_share)", detail))
    return checks


def _fmt(value: int | float | None) -> str:
    return "undefined" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _undefined(metric: str, counts: dict, where: str = "") -> str:
    """'recall undefined: no positive window in the reference' (``where``: e.g. ' in v701')."""
    why = undefined_reasons(counts).get(metric, f"its cell in {layout.METRICS_PER_MODEL} is empty")
    return f"{metric} undefined{where}: {why}"


def gate_checks(run: DeployRun, gates: Gates, metrics: dict, baseline: dict | None) -> list[dict]:
    """One check per gate and gated model, gates in KINDS then metric order, models in
    manifest order; a gate switched off (null) is shown as off, not measured. A model the
    baseline did not score fails its drop gates: the comparison asked for cannot be made;
    so does a gate on a rate that is undefined here (or, for a drop, in the baseline),
    naming why. Then a "not judged" check per quality floor the gates leave out
    (Gates.unjudged_quality)."""
    checks = []
    where = f"deployrun.{run.variant}.gates"
    for bound in gates.bounds:
        for name in filter(gates.applies_to, (model.key for model in run.models)):
            if name not in metrics:
                raise DeployRunError(f"{run.path(layout.METRICS_PER_MODEL)} has no row for model {name} of manifest.json: "
                                     f"{run.stage_fix('score')}")
            value = metrics[name][bound.metric]
            label = f"{bound.label(gates.baseline)}: {name}"
            shown = _fmt(value) if value is not None else _undefined(bound.metric, metrics[name])
            if bound.off:
                checks.append(check(label, None, value, "off",
                                    f"off: {where}.{bound.kind}.{bound.metric} is null; {bound.metric} = "
                                    f"{shown} is not judged" if value is not None else
                                    f"off: {where}.{bound.kind}.{bound.metric} is null; {shown}"))
            elif value is None:
                checks.append(check(label, False, None, bound.expected,
                                    f"{shown}: no value to judge against the bound"))
            elif bound.kind != "max_drop":
                checks.append(check(label, bound.holds(value), value, bound.expected,
                                    f"{bound.metric} = {shown}"))
            elif name not in baseline:
                checks.append(check(label, False, None, bound.expected,
                                    f"baseline {gates.baseline} did not score this model; gate it against a "
                                    f"baseline that serves it, or leave it out of "
                                    f"deployrun.{run.variant}.gates.models"))
            elif baseline[name][bound.metric] is None:
                checks.append(check(label, False, None, bound.expected,
                                    f"{bound.metric} {shown} here, but "
                                    f"{_undefined(bound.metric, baseline[name], f' in {gates.baseline}')}: "
                                    f"no drop can be measured"))
            else:
                reference = baseline[name][bound.metric]
                fell = drop(value, reference)
                checks.append(check(label, bound.holds(fell), fell, bound.expected,
                                    f"{bound.metric} {shown} here, {_fmt(reference)} in "
                                    f"{gates.baseline} (drop {_fmt(fell)})"))
    for metric, name in gates.unjudged_quality([model.key for model in run.models]):
        floor = DEFAULT_QUALITY_FLOORS[metric]
        checks.append(check(f"gate min {metric}" + (f": {name}" if name else ""), None, None, "not judged",
                            f"not judged: {where}.min.{metric} is not set; quality at the declared threshold "
                            f"is unchecked (make variant7 sets {metric}: {floor}; README, 'Quality gates')"
                            if name is None else f"not judged: this model is left out of {where}.models"))
    return checks


def judge(run: DeployRun, deployrun_section: dict) -> dict:
    """The verdict of `run`, one of the variants of params.yaml's `deployrun_section`.
    Gates first (a configuration error stops before anything else is read), then the
    evidence of each stage."""
    gates = validate_gates(run.variant, run.params, deployrun_section,
                           [model.identity() for model in run.models])
    serve_path = run.path(layout.SERVE_RECORD)
    serve = _require(read_json(serve_path, run.stage_fix("serve")),
                     ("seal", "served_digest", "ready"), serve_path, run.stage_fix("serve"))
    summary_path = run.path(layout.RUN_SUMMARY)
    summary = _require(run.read_log_json(layout.RUN_SUMMARY),
                       ("models", "fault", "log", "first_t0", "last_t0"), summary_path, run.stage_fix("infer"),
                       counts=("windows_sent", "windows_answered", "batches"))
    equivalence_path = run.path(layout.EQUIVALENCE)
    equivalence = _require(run.read_log_json(layout.EQUIVALENCE), ("enabled",), equivalence_path,
                           run.stage_fix("infer"))
    reference_path = run.path(layout.REFERENCE)
    reference = _require(read_json(reference_path, run.stage_fix("reference")),
                         ("tolerance", "objectives", "models"), reference_path, run.stage_fix("reference"))
    if not run.predictions_path.is_file():
        raise DeployRunError(f"{run.predictions_path} is missing: {run.stage_fix('infer')}")
    log = run.parquet(run.predictions_path, run.stage_fix("infer"))
    logged = log.metadata.num_rows
    metrics = read_model_metrics(run.path(layout.METRICS_PER_MODEL), run.stage_fix("score"))
    scoring = read_json(run.path(layout.SCORING), run.stage_fix("score"))
    checks = [*seal_checks(run, serve), *readiness_checks(run, serve),
              *delivery_checks(run, summary, logged, replay_window_count(run.package_metadata())),
              *event_checks(run, summary),
              *reference_checks(run, reference), *reference_decision_checks(run, reference),
              *decision_consistency_checks(run, reference, logged_per_model(log)),
              *coverage_checks(run, reference),
              *scored_share_checks(run, metrics, scoring, reference, run.settings.min_scored_share),
              *transport_checks(run, equivalence, equivalence_path)]
    baseline = None
    if gates.baseline is not None:
        baseline = read_model_metrics(
            DeployRun(gates.baseline, {}, run.executions).path(layout.METRICS_PER_MODEL),
            f"deployrun.{run.variant}.gates.baseline {gates.baseline} has not been scored; "
            f"run `dvc repro score@{gates.baseline}`")
    checks += gate_checks(run, gates, metrics, baseline)
    return verdict_document(run.variant, gates.baseline, checks)


def verdict_document(variant: str, baseline: str | None, checks: list[dict]) -> dict:
    failed = sum(c["passed"] is False for c in checks)
    return {
        "variant": variant,
        "passed": failed == 0,
        "passed_checks": sum(c["passed"] is True for c in checks),
        "failed_checks": failed,
        "not_measured": sum(c["passed"] is None for c in checks),
        "baseline": baseline,
        "checks": checks,
    }


def write_verdict(run: DeployRun, verdict: dict) -> None:
    """``verdict.json``, and its headline (passed 1/0, failed checks) as the DVC metric
    ``verdict_metrics.json``, so that `dvc metrics show` lists each variant's verdict
    beside its models' metrics (verdict.json itself, with its list of checks and its
    variant name, would widen that table past a terminal; flat keys for the same reason:
    the file's path in the row already says what they are)."""
    write_json_atomic(run.path(layout.VERDICT), verdict)
    write_json_atomic(run.path(layout.VERDICT_METRICS),
                      {"passed": int(verdict["passed"]), "failed": verdict["failed_checks"]})


def describe(verdict: dict) -> str:
    """A few lines for the stage's output: the outcome and each failed check."""
    counts = f"{verdict['passed_checks']} passed, {verdict['failed_checks']} failed, " \
             f"{verdict['not_measured']} not measured"
    lines = [f"verdict@{verdict['variant']}: {'PASSED' if verdict['passed'] else 'FAILED'} ({counts})"]
    lines += [f"  FAILED {c['name']}: {c['detail']}" for c in verdict["checks"] if c["passed"] is False]
    return "\n".join(lines)
