"""Local child processes that never outlive their parent: shared by the sandbox and the tests."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess

__all__ = ["die_with_parent", "free_port", "stop_process"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the child binds it moments later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:  # pragma: no cover - runs in the child, as preexec_fn
    """Ask Linux to SIGKILL the child when the thread that spawned it dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> int:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; the exit code. Idempotent."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
