"""What the benchmarks share: waiting for a server's ready line, pinning it to a core, stopping it, and
reading its CPU time from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess


def wait_ready(proc: subprocess.Popen[str], ready: re.Pattern[str], what: str, timeout: float = 60) -> re.Match[str]:
    """The match of ``ready`` on the first line ``proc`` prints; SystemExit naming ``what`` if none comes."""
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().strip() if readable else ""
    m = ready.search(line)
    if m is None:
        proc.kill()
        raise SystemExit(f"{what} did not start: {line!r}")
    return m


def pin(pid: int, core: int) -> None:
    """Run every thread of ``pid`` (and the threads it starts later) on ``core``."""
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task), {core})


def stop(proc: subprocess.Popen[str], timeout: float = 10) -> None:
    """SIGTERM and wait; SIGKILL if it lingers."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pid: int) -> float:
    """Time on CPU of every live thread of ``pid`` (``schedstat``, ns), or utime+stime where schedstat is
    missing.  Threads that ended are not counted: see ``bench_dovecot_auth.py`` for argon2's lane threads."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError, ProcessLookupError), \
                    open(f"/proc/{pid}/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[0])
        return total / 1e9
    except (FileNotFoundError, PermissionError):
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
