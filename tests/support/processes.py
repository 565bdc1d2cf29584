"""Looking at other processes from a test: has a process we do not own (an orphaned worker) exited?

Owns: `pid_gone`. Must not: kill or wait on processes (the tests decide that).
"""

from __future__ import annotations


def pid_gone(pid: int) -> bool:
    """True once process `pid` has exited (no /proc entry) or is a zombie (exited, not yet reaped by
    its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] == "Z"
    except OSError:
        return True
