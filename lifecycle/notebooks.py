"""`make nb6-run` / `make nb7-run`: a phase's notebook executed for one variant, with papermill.

The notebooks (``notebooks/06_packaging.py``, ``notebooks/07_deployrun.py``: jupytext
percent scripts, the reviewable source, paired with their ``.ipynb``) run the phase
through the same step functions as the DVC stages, so they write the stages' outputs
byte for byte and `dvc status` stays clean. The executed copy, with the variant's outputs
shown step by step, is saved under ``notebooks/executed/<phase>/<variant>/``: git ignores
it, and no DVC stage and no seal reads it.

A refused step stops the run with the stage's own one-line message (the cell shows it
too, ``console.notebook``); a bug shows its traceback. Either way the executed notebook,
with the failing cell, is kept and named.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from console.notebook import user_error_message
from contract import layout
from lifecycle.actions import prepare_run
from lifecycle.project import LifecycleError, Phase, Project

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# the kernel talks to papermill over local sockets, not a TCP port (nothing to reach from
# outside, and no "running over TCP without encryption" warning in the log)
KERNEL_TRANSPORT = {"KernelManager": {"transport": "ipc"}}


class NotebookError(LifecycleError):
    """A notebook step was refused, or the notebook could not run."""


def run_notebook(project: Project, phase: Phase, variant: str) -> Path:
    """Execute the phase's notebook with ``VARIANT = variant`` from the project root; return
    where the executed notebook is."""
    import jupytext
    import papermill
    from jupyter_client.kernelspec import NoSuchKernel
    from traitlets.config import Config

    prepare_run(project, phase, variant)
    source = project.root / layout.phase_notebook(phase.folder)
    output = project.root / layout.executed_notebook(phase.folder, variant)
    notebook = jupytext.read(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(notebook, str(output), parameters={"VARIANT": variant},
                                   cwd=str(project.root), progress_bar=False,
                                   stdout_file=sys.stdout, stderr_file=sys.stderr, config=Config(KERNEL_TRANSPORT))
    except NoSuchKernel as error:
        raise NotebookError(f"{source}: its kernel is not installed ({error}); run `make setup`") from None
    except papermill.PapermillExecutionError as error:
        where = f"(in cell [{error.exec_count}] of the executed notebook {output})"
        message = user_error_message(error.traceback)
        if message is None:  # a bug: its traceback, as a script shows it
            print(ANSI.sub("", "\n".join(error.traceback)), file=sys.stderr)
            message = f"{error.ename}: {error.evalue}"
        raise NotebookError(f"{message}\n{where}") from None
    print(f"executed notebook: {output}")
    return output
