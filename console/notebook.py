"""What a phase notebook (notebooks/) shows when a step is refused: the one line
``error: <message>`` the stage scripts print, not a traceback.

A stage script turns an error the user can fix (``contract.errors.UserError``: a wrong
key in params.yaml, a missing upstream file...) into that one line and exit 1; a
notebook run through ``make nb6-run`` / ``make nb7-run`` must say the same thing, in the
cell that failed and on the terminal. ``show_user_errors()`` makes the notebook's kernel
display such an error as that line (an ordinary error output, so papermill still stops
there); every other exception is a bug and keeps its full traceback. The runner
(``lifecycle.notebooks``) recognises the line with ``user_error_message``.

Ground floor like the rest of ``console``: the error class is passed in, nothing of ours
is imported.
"""
from __future__ import annotations

PREFIX = "error: "


def one_line(error: BaseException) -> str:
    return f"{PREFIX}{error}"


def show_user_errors(user_error: type[BaseException]) -> None:
    """In the running IPython kernel, show every ``user_error`` raised by a cell as one line."""
    from IPython import get_ipython  # only inside a notebook's kernel

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("show_user_errors() runs inside an IPython kernel (a notebook)")

    def handler(shell, etype, value, tb, tb_offset=None):
        structured = [one_line(value)]
        shell._showtraceback(etype, value, structured)  # the error output papermill stops on
        return structured

    shell.set_custom_exc((user_error,), handler)


def user_error_message(traceback: list[str]) -> str | None:
    """The message of a cell error that ``show_user_errors`` displayed, else None (a bug:
    the caller shows the whole traceback)."""
    if len(traceback) == 1 and traceback[0].startswith(PREFIX):
        return traceback[0][len(PREFIX):]
    return None
