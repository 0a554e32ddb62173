"""F07 validation: score a deploy run's predictions against the package's F04 references
and report on it.

The runtime (`runtime/`) serves and logs; this package only reads what a run left on disk
(`manifest.json`, `logs/`, the F06 package it points at), so a run can be re-scored and
re-reported without serving again.
"""
