"""A small HTTP client for the serving tests: free loopback ports, images as bytes, JSON requests, multipart uploads."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid

from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_bytes(size=(16, 16), mode="RGB", fmt="PNG", color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    img = Image.new(mode, size, color if mode in ("RGB", "RGBA", "CMYK") else 128)
    img.save(buf, format=fmt)
    return buf.getvalue()


def request(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict | str]:
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read().decode()
            status = resp.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read().decode(), exc.code
    try:
        return status, json.loads(body)
    except json.JSONDecodeError:
        return status, body


def multipart(files: list[tuple[str, str, bytes]]) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    parts = []
    for field, name, content in files:
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def predict(server: str, files: list[tuple[str, str, bytes]]) -> tuple[int, dict]:
    body, headers = multipart(files)
    return request(server + "/predict", body, headers)


def wait_until_up(server: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Poll ``/health`` of a server started as a child process until it answers; fail early if the child exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(server + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the server did not answer {server}/health within {timeout:.0f} s")
