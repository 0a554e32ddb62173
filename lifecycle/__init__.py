"""The variant lifecycle of F06 and F07 (the seeds' make targets): define a variant in
params.yaml, run its DVC stages, check, publish (DVC remote + git), remove, clean.

Modules: ``project`` (phases, params, stage names), ``yamledit`` (in-place edits of
params.yaml and dvc.lock), ``define`` (new variants), ``checks``, ``actions`` (run,
publish, remove, clean), ``tools`` (DVC and git), ``cli``.
"""
