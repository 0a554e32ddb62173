"""Whether F07's figures are held out, i.e. computed on windows no model was fitted on.

CONTRACT: the F04 dataset holds every window, including those F05 trained on, so metrics
over it are not held out unless the replay starts after the training period. Upstream
F05 shuffles rows before splitting and records no times, so for real upstream runs this
cannot be told (null). The demo's F05 (demo/f05.py) splits by time and records the t0
span of each split in `05_modeling_metadata.json`:

    "splits": {"train": {"rows", "positives", "t0_first", "t0_last"}, "val": {...}, "test": {...}}

Train and validation windows both shaped the model (validation picked the trial), so
the fitted period ends where the last of them ends: its t0 plus the whole window span
(OW+LT+PW)·Tu, because events up to there were seen as inputs or labels. The figures
are held out only when the first replayed window starts at or after that point, for
every F05 run in the package.
"""

from __future__ import annotations

from f07_validation.timefmt import utc_iso

FITTED_SPLITS = ("train", "val")


def _one_f05(source_f05: str, metadata: dict | None, first_t0: int, span: int) -> dict:
    if metadata is None:
        return {"held_out": None,
                "reason": f"F05 {source_f05} has no 05_modeling_metadata.json to tell its training period"}
    splits = metadata.get("splits") or {}
    fitted = [splits[name].get("t0_last") for name in FITTED_SPLITS if name in splits]
    fitted = [t0 for t0 in fitted if t0 is not None]  # an empty split has no span
    if not fitted:
        return {"held_out": None,
                "reason": f"F05 {source_f05} does not record the t0 range of its train/val "
                          f"windows (upstream splits shuffled rows)"}
    fitted_end = int(max(fitted)) + span
    if first_t0 >= fitted_end:
        return {"held_out": True,
                "reason": f"the replay's first window ({utc_iso(first_t0)}) starts no earlier "
                          f"than the end of the windows F05 {source_f05} was fitted on "
                          f"({utc_iso(fitted_end)})"}
    return {"held_out": False,
            "reason": f"the replay's first window ({utc_iso(first_t0)}) starts before the end "
                      f"of the windows F05 {source_f05} was fitted on ({utc_iso(fitted_end)}): "
                      f"the figures include training or validation windows"}


def held_out_statement(first_t0: int | None, span: int,
                       f05_metadata: dict[str, dict | None]) -> dict:
    """`{"held_out": True|False|None, "reason": str, "by_f05": {source_f05: {...}}}`;
    overall False as soon as one F05 run saw replayed windows, True only when none did
    and every run could tell."""
    if first_t0 is None:
        return {"held_out": None, "reason": "no prediction was logged", "by_f05": {}}
    by_f05 = {source: _one_f05(source, metadata, int(first_t0), span)
              for source, metadata in sorted(f05_metadata.items())}
    values = [entry["held_out"] for entry in by_f05.values()]
    if False in values:
        held_out = False
    elif values and all(values):
        held_out = True
    else:
        held_out = None
    reason = "; ".join(entry["reason"] for entry in by_f05.values() if entry["held_out"] == held_out)
    return {"held_out": held_out, "reason": reason, "by_f05": by_f05}
