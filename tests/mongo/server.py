"""The MongoDB the tests run against: ``ASYNCTASK_TEST_MONGO_URL``, or a private mongoeco server.

mongoeco (a MongoDB wire-protocol server written in Python) needs Python >= 3.13, so it lives in
a venv of its own, built from pyenv's newest 3.13+ interpreter at
``$ASYNCTASK_MONGOECO_VENV`` (default ``~/.cache/asynctask-test/mongoeco-venv``) with mongoeco
and pymongo (mongoeco refuses every connection without pymongo beside it). ``.ci/run`` prepares
it with ``python -m tests.mongo.server --prepare``; the tests build it on first use otherwise.

Each test process starts at most one server, on a free loopback port, when a test first needs
it; :func:`stop` (called at the end of the session) kills it by PID.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MONGOECO = "mongoeco==4.11.0"
LAUNCHER = Path(__file__).with_name("mongoeco_server.py")
VENV = Path(
    os.environ.get("ASYNCTASK_MONGOECO_VENV", Path.home() / ".cache" / "asynctask-test" / "mongoeco-venv")
)

_process: subprocess.Popen[str] | None = None
_url: str | None = None


def _pyenv() -> str:
    """The pyenv command: on PATH, else in ``$PYENV_ROOT`` (default ``~/.pyenv``, pyenv's own
    default), which a non-interactive shell such as CI's may not have put on PATH."""
    found = shutil.which("pyenv")
    if found:
        return found
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    if (root / "bin" / "pyenv").exists():
        return str(root / "bin" / "pyenv")
    raise RuntimeError("pyenv is not installed: it provides the Python >= 3.13 that mongoeco needs")


def _python313() -> str:
    """pyenv's newest installed CPython >= 3.13 (mongoeco's minimum)."""
    pyenv = _pyenv()
    listed = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True, check=True)
    found: list[tuple[tuple[int, ...], str]] = []
    for name in listed.stdout.split():
        match = re.fullmatch(r"3\.(\d+)\.(\d+)", name)
        if match and int(match.group(1)) >= 13:
            found.append(((3, int(match.group(1)), int(match.group(2))), name))
    if not found:
        raise RuntimeError("no Python >= 3.13 in `pyenv versions`: install one (pyenv install 3.13)")
    prefix = subprocess.run(
        [pyenv, "prefix", max(found)[1]], capture_output=True, text=True, check=True
    ).stdout.strip()
    return str(Path(prefix) / "bin" / "python")


def venv_python() -> Path:
    return VENV / "bin" / "python"


def _ready() -> bool:
    python = venv_python()
    if not python.exists():
        return False
    check = subprocess.run([python, "-c", "import mongoeco.wire, pymongo"], capture_output=True, check=False)
    return check.returncode == 0


def prepare() -> Path:
    """Build the mongoeco venv unless it is ready; safe to call from parallel processes."""
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / ".mongoeco-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _ready():
            subprocess.run([_python313(), "-m", "venv", "--clear", str(VENV)], check=True)
            pip = [str(venv_python()), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            subprocess.run([*pip, MONGOECO, "pymongo"], check=True)
    return venv_python()


def url() -> str:
    """The URL of the server for this test process (started on first call)."""
    global _process, _url
    given = os.environ.get("ASYNCTASK_TEST_MONGO_URL")
    if given:
        return given
    if _url is not None:
        return _url
    python = prepare()
    process = subprocess.Popen(
        [str(python), str(LAUNCHER), "0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    _process = process
    atexit.register(stop)
    assert process.stdout is not None
    line = process.stdout.readline()  # "ready <port>", or EOF if it died
    if not line.startswith("ready "):
        stop()
        raise RuntimeError(f"the mongoeco server did not start (said {line!r})")
    _url = f"mongodb://127.0.0.1:{int(line.split()[1])}/?directConnection=true"
    return _url


def broker_url(prefix: str, database: str = "asynctask_test") -> str:
    """A ``mongodb://`` URL for a broker on this process's server: ``database``, ``?prefix=``."""
    parts = urlsplit(url())
    query = urlencode([*parse_qsl(parts.query), ("prefix", prefix)])
    return urlunsplit(parts._replace(path=f"/{database}", query=query))


def stop() -> None:
    """Kill this process's server, if it started one."""
    global _process, _url
    process, _process, _url = _process, None, None
    if process is not None and process.poll() is None:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    if process is not None and process.stdout is not None:
        process.stdout.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--prepare"]:
        print(f"mongoeco venv ready: {prepare()}")
    else:
        sys.exit("usage: python -m tests.mongo.server --prepare")
