"""The VDF prover process: `python -m vdf.worker` (ARCHITECTURE.md §1, PROTOCOL §4.2).

Owns: a loop that reads one request line from stdin, proves it with chiavdf and writes one answer
line to stdout. Must not: import trio, touch the chain store or keys, or outlive its parent.

Line protocol (ASCII, one line each way, so a crash is an EOF and a kill is always safe):
    request:  "prove <challenge hex> <discriminant bits> <iterations>\\n"
    answer:   "ok <output hex> <proof hex>\\n"   or   "err <one-line reason>\\n"
The process is single-purpose and stateless: the parent kills it to cancel a computation (chiavdf's
own prove cannot be interrupted from Python) and starts a new one for the next request.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import TextIO

from vdf.core import VdfError, prove

READY_LINE = "ready"
PARENT_POLL_S = 0.2


def _die_with_parent() -> None:
    """Exit as soon as the parent daemon is gone, even in the middle of a computation (chiavdf
    releases the GIL while it proves, so this watchdog thread runs meanwhile).

    Not `prctl(PR_SET_PDEATHSIG)`: that signal follows the parent *thread* that forked us, and trio
    forks child processes from a cached worker thread that exits after 10 s idle. It SIGKILLed healthy
    workers in the middle of a request: the daemon's "VDF worker died ... restarting" warnings."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def handle(line: str) -> str:
    """The answer line (without newline) to one request line."""
    parts = line.split()
    if len(parts) != 4 or parts[0] != "prove":
        return "err malformed request"
    try:
        challenge = bytes.fromhex(parts[1])
        bits = int(parts[2])
        iterations = int(parts[3])
        output, proof = prove(challenge, bits, iterations)
    except (ValueError, VdfError) as exc:
        return "err " + " ".join(str(exc).split())
    return f"ok {output.hex()} {proof.hex()}"


def serve(stdin: TextIO, stdout: TextIO) -> None:
    stdout.write(READY_LINE + "\n")
    stdout.flush()
    for line in stdin:
        stdout.write(handle(line) + "\n")
        stdout.flush()


def main() -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the daemon, which kills us itself
    serve(sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
