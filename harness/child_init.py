"""Tiny trusted start-up shim of an experiment's child process (standard library only).

The runner starts ``python -I -S child_init.py LIMITS_JSON -- COMMAND...`` (inside ``unshare`` where
available). The shim sets the resource limits on itself, so that they hold from the first
instruction of the command on (no race with a ``prlimit`` from outside), then:

- when it is process 1 of a new PID namespace, it forks the command, reaps every orphan the
  namespace hands it, and exits with the command's status (``128 + signal`` when the command was
  killed by a signal). When it exits, the kernel kills every process left in the namespace, so
  daemons that left the process group with ``setsid`` die with the run;
- otherwise it simply ``exec``s the command (same pid, same process group).

SIGTERM, SIGINT and SIGHUP are ignored by process 1 (the harness sends them to the whole process
group; the command gets its own copy); SIGKILL from the harness always ends it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys


def apply_limits(limits: dict) -> None:
    """Set ``{"RLIMIT_NAME": value}`` as soft and hard limit on this process; names or values the
    platform refuses are skipped (the hard wall-clock kill still applies). ``{"cpus": [0, 1]}``
    pins the process to those CPU cores (one runner of several, :mod:`harness.runners`), where the
    platform can."""
    cpus = limits.pop("cpus", None)
    if cpus and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, set(cpus))
        except OSError:
            pass
    for name, value in limits.items():
        res = getattr(resource, name, None)
        if res is None:
            continue
        try:
            resource.setrlimit(res, (int(value), int(value)))
        except (ValueError, OSError):
            pass


def _status_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _run_as_init(argv: list[str]) -> int:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    child = os.fork()
    if child == 0:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    while True:  # reap orphans until the command itself ends
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child:
            return _status_code(status)


def main(args: list[str]) -> int:
    """Entry point: ``LIMITS_JSON -- COMMAND...``. Returns the exit code to use (as init), else
    does not return (exec). Exits 2 on a malformed command line, 127 when exec fails."""
    if len(args) < 3 or args[1] != "--":
        print("usage: child_init.py LIMITS_JSON -- COMMAND...", file=sys.stderr)
        return 2
    apply_limits(json.loads(args[0]))
    argv = args[2:]
    if os.getpid() == 1:
        return _run_as_init(argv)
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"cannot start {argv[0]}: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
