"""Running one test command on one version: export it, substitute the placeholders, run the
command in a process group of its own under a timeout, and collect the facts (exit code or
signal, metrics, the tails of stdout and stderr, duration, host, time).

Nothing here writes to the repository; :mod:`mgit.lifecycle.testing` records the facts and
:func:`mgit.lifecycle.specs.judge` decides whether they pass.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import signal as _signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mgit.core import RepoCore
from mgit.errors import MgitError

__all__ = ["OUTPUT_LINES", "execute", "kill_running", "ref_name"]

#: Lines of stdout and of stderr kept in a result.
OUTPUT_LINES = 20
_OUTPUT_CHARS = 4000


def ref_name(core: RepoCore, commit: str) -> str:
    """A REF naming the version: ``model`` (the tip of its line), ``model~N``, or the id."""
    model = core.model_of(commit)
    tip = core.model_heads().get(model)
    n = 0
    while tip is not None and n < 10000:
        if tip == commit:
            return model if n == 0 else f"{model}~{n}"
        parents = core.read_commit(tip).parents
        tip = parents[0].oid if parents else None
        n += 1
    return commit


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines()[-OUTPUT_LINES:]
    return "\n".join(lines)[-_OUTPUT_CHARS:]


def _flatten(v: dict[str, Any], prefix: str = "", out: dict[str, float | None] | None = None) -> dict[str, float | None]:
    """Numbers of a (nested) JSON object by dotted name; non-finite numbers as None."""
    out = {} if out is None else out
    for k, x in v.items():
        name = f"{prefix}{k}"
        if isinstance(x, dict) and len(out) < 1000:
            _flatten(x, name + ".", out)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            out[name] = float(x) if math.isfinite(x) else None
    return out


def _read_metrics(metrics_file: Path, stdout_tail: str) -> tuple[dict[str, float | None] | None, str | None, str | None]:
    """``(metrics, source, why none)``: the ``{metrics}`` file if the command wrote one, else
    the last output line when it is a JSON object."""
    try:
        data = metrics_file.read_bytes()[: 1 << 20]
    except OSError:
        data = b""
    if data.strip():
        try:
            v = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError):
            return None, "file", "the metrics file is not valid JSON"
        if not isinstance(v, dict):
            return None, "file", "the metrics file does not hold a JSON object"
        return _flatten(v), "file", None
    last = next((ln.strip() for ln in reversed(stdout_tail.splitlines()) if ln.strip()), "")
    if last.startswith("{"):
        try:
            v = json.loads(last)
            if isinstance(v, dict):
                return _flatten(v), "stdout", None
        except (json.JSONDecodeError, RecursionError, ValueError):
            pass
    return None, None, (
        "the command reported no metrics: it wrote nothing to {metrics} and its last output "
        "line is not a JSON object" + (f" (it is {last[:80]!r})" if last else " (no output)")
    )


#: Commands running now (killed when a batch is interrupted).
_RUNNING: set[subprocess.Popen[bytes]] = set()
_RUNNING_LOCK = threading.Lock()
_KILLED: set[subprocess.Popen[bytes]] = set()


def kill_running() -> None:
    """Kill the process group of every test command running in this process; their runs are
    marked ``interrupted`` (not a result: never recorded)."""
    with _RUNNING_LOCK:
        procs = list(_RUNNING)
        _KILLED.update(procs)
    for p in procs:
        _kill_group(p)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, _signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def execute(
    core: RepoCore,
    cmd: str,
    commit: str,
    *,
    timeout: float,
    cwd: str | os.PathLike[str] | None = None,
    test: str = "",
) -> dict[str, Any]:
    """Export ``commit`` to a temp folder and run the command template on it; the facts.

    Placeholders (each replaced by the shell-quoted value): ``{model_dir}`` the exported
    folder, ``{ref}`` a REF naming the version, ``{commit}`` its id, ``{metrics}`` a file the
    command may write a JSON object of metrics to (else its last output line is read, when it
    is a JSON object). The same values are in the environment as ``MGIT_MODEL_DIR``,
    ``MGIT_REF``, ``MGIT_COMMIT``, ``MGIT_METRICS`` (and ``MGIT_TEST``). The command runs in
    its own process group, with ``cwd`` (default: the current folder); at the timeout the
    whole group is killed.
    """
    started = time.time()
    rec: dict[str, Any] = {
        "format": 1, "commit": commit, "test": test, "host": _host(), "time": int(started),
        "exit_code": None, "signal": None, "timed_out": False, "export_error": None,
        "metrics": None, "metrics_source": None, "metrics_error": None, "output": "", "stderr": "",
        "duration": 0.0,
    }
    with tempfile.TemporaryDirectory(prefix="mgit-test-") as tmp:
        model_dir = Path(tmp) / "model"
        metrics_file = Path(tmp) / "metrics.json"
        try:
            from mgit.tensors import export

            export(core, commit, model_dir)
        except (MgitError, OSError) as exc:
            rec["export_error"] = f"{type(exc).__name__}: {exc}"
            rec["duration"] = round(time.time() - started, 3)
            return rec
        ref = ref_name(core, commit)
        values = {"{model_dir}": str(model_dir), "{ref}": ref, "{commit}": commit, "{metrics}": str(metrics_file)}
        line = cmd
        for k, v in values.items():
            line = line.replace(k, shlex.quote(v))
        env = dict(os.environ, MGIT_MODEL_DIR=str(model_dir), MGIT_REF=ref, MGIT_COMMIT=commit,
                   MGIT_METRICS=str(metrics_file), MGIT_TEST=test)
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        t0 = time.monotonic()
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(  # noqa: S602 - the user's own command line
                line, shell=True, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True,
            )
            with _RUNNING_LOCK:
                _RUNNING.add(proc)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                rec["timed_out"] = True
                _kill_group(proc)
                rc = proc.wait()
            except BaseException:
                _kill_group(proc)
                proc.wait()
                raise
            finally:
                with _RUNNING_LOCK:
                    _RUNNING.discard(proc)
                    if proc in _KILLED:
                        _KILLED.discard(proc)
                        rec["interrupted"] = True
            _kill_group(proc)  # what it left running in the background
        rec["duration"] = round(time.monotonic() - t0, 3)
        if not rec["timed_out"]:
            if rc < 0:
                try:
                    rec["signal"] = _signal.Signals(-rc).name
                except ValueError:
                    rec["signal"] = f"signal {-rc}"
            else:
                rec["exit_code"] = rc
                if 128 < rc <= 128 + 64:  # the shell's way of saying its command got a signal
                    try:
                        rec["signal"] = _signal.Signals(rc - 128).name
                    except ValueError:
                        pass
        rec["output"], rec["stderr"] = _tail(out_path), _tail(err_path)
        metrics, source, why = _read_metrics(metrics_file, rec["output"])
        rec["metrics"], rec["metrics_source"], rec["metrics_error"] = metrics, source, why
    return rec


def _host() -> str:
    try:
        return os.uname().nodename
    except AttributeError:  # not POSIX
        return "unknown"
