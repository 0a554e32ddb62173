"""README.md works as written: every command in its ```bash blocks runs, in order, in one
shell, as a reader would type them, in a copy of the built small demo (the same stages as
`make run`, fewer days; see conftest.py).

The shell starts without the project's virtual environment on PATH, so README's
`source .venv/bin/activate` is what makes `dvc` and `python` the project's. Two commands
are run differently, and only these: `make test` (this test runs inside it) is skipped,
and the server, which serves until stopped, is started in the background, asked for
`/health` once it prints LISTENING, and stopped. The commands README shows in ```text
blocks are not its steps to run: alternatives to one that is (the notebook runs, which
test_notebooks.py runs and compares byte for byte with the script runs) and a server
started in the foreground."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT, project_env

README = PROJECT / "README.md"
NOT_RUN = {"make test"}
SERVER = "python -m runtime.server"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Started in the background: wait for its LISTENING line, GET /health, stop it.
SERVER_CHECK = """{command} > "$README_TMP/server.log" 2>&1 &
server=$!
python - "$README_TMP/server.log" <<'PYTHON'
import re, sys, time, urllib.request
deadline = time.monotonic() + 120
while not (found := re.search(r"LISTENING (http://\\S+)", open(sys.argv[1]).read())):
    if time.monotonic() > deadline:
        sys.exit("the server printed no LISTENING line: " + open(sys.argv[1]).read())
    time.sleep(0.2)
with urllib.request.urlopen(found.group(1) + "/health", timeout=30) as answer:
    print("server /health:", answer.status, answer.read().decode())
PYTHON
kill "$server"; wait "$server" || true"""


def readme_commands(text: str) -> list[str]:
    """Each command line of the ```bash blocks, in order, comments kept."""
    blocks = re.findall(r"^```bash\n(.*?)^```", text, flags=re.M | re.S)
    return [line for block in blocks for line in block.splitlines() if line.split("#", 1)[0].strip()]


def readme_script(commands: list[str]) -> str:
    lines = ["set -eo pipefail", "trap 'echo \"README command failed: $BASH_COMMAND\" >&2' ERR"]
    for line in commands:
        command = line.split("#", 1)[0].strip()
        if command in NOT_RUN:
            continue
        lines.append(SERVER_CHECK.format(command=command) if command.startswith(SERVER) else line)
    return "\n".join(lines) + "\n"


def link_venv(root: Path) -> None:
    """The copy's .venv: this interpreter's environment, entry by entry, and a fresh
    `.installed` stamp so that `make setup` finds it installed and builds nothing."""
    venv = Path(sys.prefix)
    (root / ".venv").mkdir()
    for entry in venv.iterdir():
        if entry.name != ".installed":
            (root / ".venv" / entry.name).symlink_to(entry)
    for requirements in root.glob("requirements*.txt"):
        os.utime(requirements, (0, 0))
    (root / ".venv" / ".installed").touch()


def test_readme_has_the_commands_this_test_relies_on():
    commands = [line.split("#", 1)[0].strip() for line in readme_commands(README.read_text(encoding="utf-8"))]
    assert commands[:2] == ["make run", "make test"], commands[:2]
    activate = commands.index("source .venv/bin/activate")
    first_bare = next(i for i, c in enumerate(commands) if c.split()[0] in ("dvc", "python"))
    assert activate < first_bare, "README runs dvc/python before activating .venv"
    assert sum(c.startswith(SERVER) for c in commands) == 1


def test_every_readme_command_runs_as_written(project_copy, tmp_path):
    link_venv(project_copy)
    env = project_env()
    env["PATH"] = SYSTEM_PATH
    env.pop("VIRTUAL_ENV", None)
    env["README_TMP"] = str(tmp_path)
    script = readme_script(readme_commands(README.read_text(encoding="utf-8")))
    result = subprocess.run(["bash", "-c", script], cwd=project_copy, env=env, capture_output=True, text=True,
                            timeout=900)
    output = f"--- stdout\n{result.stdout[-6000:]}\n--- stderr\n{result.stderr[-6000:]}"
    assert result.returncode == 0, output
    assert "server /health: 200" in result.stdout, output
    # The stages it ran (F06 probes, servers, the in-process equivalence check) load
    # TensorFlow: none of its start-up noise reaches the reader.
    noise = [line for line in (result.stdout + result.stderr).splitlines()
             if re.match(r"[IWE]\d{4} ", line) or "absl" in line]
    assert not noise, noise[:5]
