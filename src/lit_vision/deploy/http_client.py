"""A standard-library client for ``python -m lit_vision.serve``, shared by ``benchmarks/serve_load.py`` and the
serving tests: a free loopback port, multipart uploads, and waiting for a freshly started server's ``/health``."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Sequence


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(files: Sequence[tuple[str, str, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A ``multipart/form-data`` body of ``(field, filename, content)`` parts, and its Content-Type header."""
    boundary = uuid.uuid4().hex
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n"
             for field, name, content in files]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def wait_until_up(server: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Poll ``/health`` of a server started as a child process until it answers; fail early if the child exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(server + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer {server}/health within {timeout:.0f} s")
