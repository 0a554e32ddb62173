"""Installs the fault described by ``F07_TEST_FAULT`` (see faults.py) in every Python
process started with this folder on ``PYTHONPATH``; nothing without the variable."""
import json
import os

if os.environ.get("F07_TEST_FAULT"):
    from faults import install

    install(json.loads(os.environ["F07_TEST_FAULT"]))
