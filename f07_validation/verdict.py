"""The F07 verdict: does the run pass, and if not, why (`verdict.json`, a DVC metric).

A run passes when every check passes. Checks are evidence read from what the earlier
stages recorded, plus one measurement made now:
- the package seal: verified by the server when it was served (serve.json), and
  verified again here, because the verdict vouches for the package as it is on disk
  now, which must still be the one that was served (same digest);
- the server: ready, and every model loaded and warmed up (serve.json);
- the replay: every window answered, one logged prediction per window and model, no
  non-finite output (run_summary.json);
- functional equivalence: each model's largest difference between the server and the
  same model in-process within the tolerance (equivalence.json). A run with
  `check_equivalence: false` did not measure it: that check is `passed: null` ("not
  measured"), counted apart, and does not fail the run;
- the gates of params.yaml (f07_validation.gates), one check per gate and model.

Each check is `{name, passed, measured, expected, detail}`. The top level carries
`passed` and the counts of checks so that `dvc metrics show` prints them per variant
(it skips lists and nulls, so the checks themselves stay out of its table).

A missing or malformed input is not a failed check but an error naming the file and
the stage to rerun: a verdict is only written from complete evidence.
"""

from __future__ import annotations

from pathlib import Path

from contract import layout
from contract.files import write_json_atomic
from contract.seal import verify_seal
from f07_validation.deployrun import DeployRun, DeployRunError, read_json
from f07_validation.gates import Gates, drop, read_model_metrics, validate_gates


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
    """The seal when served (serve.json) and now (verified again on disk), both against
    the digest the manifest was made for."""
    digest = run.manifest.package_digest
    package = run.manifest.parent_variant_f06
    rerun = f"rerun F07 (`dvc repro serve@{run.variant}`)"
    if serve["seal_verified"] is not True:
        served_detail = f"the serve stage did not record a verified seal for package {package}; {rerun}"
    elif serve["package_digest"] != digest:
        served_detail = (f"serve.json records digest {serve['package_digest']} but manifest.json was made for "
                         f"{digest}: they come from different serve runs; {rerun}")
    else:
        served_detail = f"package {package}, digest {digest}"
    served_ok = serve["seal_verified"] is True and serve["package_digest"] == digest

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
        check("seal verified when served", served_ok, serve["seal_verified"], "true", served_detail),
        check("package unchanged since served", now.ok and now.digest == digest, now.digest, f"== {digest}",
              now_detail),
    ]


def readiness_checks(run: DeployRun, serve: dict) -> list[dict]:
    """GET /ready answered 200, and each model reached `ready` (loaded, warmed up)."""
    states = serve["models"] if isinstance(serve["models"], dict) else {}
    checks = [check("server ready", serve["ready"] is True, serve["ready"], "true",
                    "GET /ready answered 200" if serve["ready"] is True else
                    f"the server never answered GET /ready with 200; see serve@{run.variant}'s output")]
    for model in run.models:
        name = model.key
        state = states.get(name)
        detail = ("" if state == "ready" else
                  "serve.json has no state for this model" if state is None else
                  f"the model did not load and warm up (state {state!r}); see serve@{run.variant}'s output")
        checks.append(check(f"model ready: {name}", state == "ready", state, "ready", detail))
    return checks


def delivery_checks(run: DeployRun, summary: dict) -> list[dict]:
    """What the replay got back: an answer for every window sent (and at least one
    window: a run that sent nothing proves nothing), a logged row per window and model,
    and no model answering with a non-finite output."""
    sent, answered, logged = summary["windows_sent"], summary["windows_answered"], summary["rows_logged"]
    if sent == 0:
        answered_detail = ("no window was sent: the replay holds no complete observation window; widen the "
                           f"replay time range of package {run.manifest.parent_variant_f06}")
    elif answered != sent:
        answered_detail = f"{sent - answered} of {sent} windows sent got no answer"
    else:
        answered_detail = f"{sent} windows sent, all answered"
    n_models = len(run.models)
    rows = sent * n_models
    checks = [
        check("every window answered", sent > 0 and answered == sent, answered, f"== {sent} (windows sent)",
              answered_detail),
        check("every prediction logged", logged == rows, logged,
              f"== {rows} ({sent} windows x {n_models} models)",
              "" if logged == rows else f"logs/raw_predictions has {logged} rows instead of {rows}"),
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


def equivalence_checks(run: DeployRun, equivalence: dict, path: Path) -> list[dict]:
    """Per model: server and in-process probabilities within the tolerance, and non-finite
    at the same windows. Recomputed from the recorded differences, not taken from the
    recorded `passed`. `non_finite_mismatch` is optional in the file's format (absent
    means none was counted)."""
    if equivalence["enabled"] is not True:
        return [check("functional equivalence", None, None, "max |server - in-process| <= tolerance",
                      f"not measured: deployrun.{run.variant}.check_equivalence is false; set it to true "
                      f"to compare the server with the same models in-process")]
    fix = run.stage_fix("infer")
    _require(equivalence, ("tolerance", "windows_compared", "models"), path, fix)
    tolerance, compared = equivalence["tolerance"], equivalence["windows_compared"]
    checks = []
    for model in run.models:
        name = model.key
        result = equivalence["models"].get(name)
        if not isinstance(result, dict) or "max_abs_diff" not in result:
            checks.append(check(f"equivalence: {name}", False, None, f"<= {tolerance}",
                                "equivalence.json has no max_abs_diff for this model"))
            continue
        diff, mismatch = result["max_abs_diff"], result.get("non_finite_mismatch", 0)
        passed = compared > 0 and diff <= tolerance and mismatch == 0
        if compared == 0:
            detail = "no window was compared"
        elif mismatch:
            detail = f"{mismatch} windows non-finite on one side only; max |diff| {diff:.3g} over {compared} windows"
        else:
            detail = f"max |server - in-process| {diff:.3g} over {compared} windows"
        checks.append(check(f"equivalence: {name}", passed, diff, f"<= {tolerance}", detail))
    return checks


def _fmt(value: int | float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def gate_checks(run: DeployRun, gates: Gates, metrics: dict, baseline: dict | None) -> list[dict]:
    """One check per gate and gated model, gates in KINDS then metric order, models in
    manifest order. A model the baseline did not score fails its drop gates: the
    comparison asked for cannot be made."""
    checks = []
    for bound in gates.bounds:
        for name in filter(gates.applies_to, (model.key for model in run.models)):
            if name not in metrics:
                raise DeployRunError(f"{run.path(layout.METRICS_PER_MODEL)} has no row for model {name} of manifest.json: "
                                     f"{run.stage_fix('score')}")
            value = metrics[name][bound.metric]
            label = f"{bound.label(gates.baseline)}: {name}"
            if bound.kind != "max_drop":
                checks.append(check(label, bound.holds(value), value, bound.expected,
                                    f"{bound.metric} = {_fmt(value)}"))
            elif name not in baseline:
                checks.append(check(label, False, None, bound.expected,
                                    f"baseline {gates.baseline} did not score this model; gate it against a "
                                    f"baseline that serves it, or leave it out of "
                                    f"deployrun.{run.variant}.gates.models"))
            else:
                reference = baseline[name][bound.metric]
                fell = drop(value, reference)
                checks.append(check(label, bound.holds(fell), fell, bound.expected,
                                    f"{bound.metric} {_fmt(value)} here, {_fmt(reference)} in "
                                    f"{gates.baseline} (drop {_fmt(fell)})"))
    return checks


def judge(run: DeployRun, deployrun_section: dict) -> dict:
    """The verdict of `run`, one of the variants of params.yaml's `deployrun_section`.
    Gates first (a configuration error stops before anything else is read), then the
    evidence of each stage."""
    gates = validate_gates(run.variant, run.params, deployrun_section,
                           [model.identity() for model in run.models])
    serve_path = run.path(layout.SERVE_RECORD)
    serve = _require(read_json(serve_path, run.stage_fix("serve")),
                     ("seal_verified", "package_digest", "ready", "models"), serve_path, run.stage_fix("serve"))
    summary_path = run.path(layout.RUN_SUMMARY)
    summary = _require(run.read_log_json(layout.RUN_SUMMARY),
                       ("models",), summary_path, run.stage_fix("infer"),
                       counts=("windows_sent", "windows_answered", "rows_logged"))
    equivalence_path = run.path(layout.EQUIVALENCE)
    equivalence = _require(run.read_log_json(layout.EQUIVALENCE), ("enabled",), equivalence_path,
                           run.stage_fix("infer"))
    checks = [*seal_checks(run, serve), *readiness_checks(run, serve), *delivery_checks(run, summary),
              *equivalence_checks(run, equivalence, equivalence_path)]
    if gates.bounds:
        metrics = read_model_metrics(run.path(layout.METRICS_PER_MODEL), run.stage_fix("score"))
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
    write_json_atomic(run.path(layout.VERDICT), verdict)


def describe(verdict: dict) -> str:
    """A few lines for the stage's output: the outcome and each failed check."""
    counts = f"{verdict['passed_checks']} passed, {verdict['failed_checks']} failed, " \
             f"{verdict['not_measured']} not measured"
    lines = [f"verdict@{verdict['variant']}: {'PASSED' if verdict['passed'] else 'FAILED'} ({counts})"]
    lines += [f"  FAILED {c['name']}: {c['detail']}" for c in verdict["checks"] if c["passed"] is False]
    return "\n".join(lines)
