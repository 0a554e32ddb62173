"""Run a module as ``python -m`` would and record its process's peak resident memory.

    python -m bench.peak_memory OUT.json stages.score v701

After the module ends (normally, by ``sys.exit`` or by an exception) this process's
``VmHWM`` (the kernel's high-water mark of its resident memory, ``/proc/self/status``)
is written to ``OUT.json`` as ``{"peak_bytes": N, "exit": code}``. ``VmHWM`` starts afresh
at ``execve`` and misses no short peak; ``getrusage``'s ``ru_maxrss`` would carry the
parent's mark over the exec. A server process the module starts is a process of its own
and is not counted.
"""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path


def peak_rss_bytes() -> int:
    """This process's peak resident memory since it started (Linux ``VmHWM``)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def main() -> None:
    out, module, *args = sys.argv[1:]
    sys.argv = [module, *args]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        code = 1
        raise
    finally:
        Path(out).write_text(json.dumps({"peak_bytes": peak_rss_bytes(), "exit": code}))
    sys.exit(code)


if __name__ == "__main__":
    main()
