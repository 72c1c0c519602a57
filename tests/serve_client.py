"""The serving tests' HTTP client: images as bytes, JSON requests, uploads to /predict (ports, multipart bodies and
the wait for /health come from :mod:`lit_vision.deploy.http_client`, which the load benchmark uses too)."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from PIL import Image

from lit_vision.deploy.http_client import free_port, multipart, wait_until_up

__all__ = ["free_port", "image_bytes", "multipart", "predict", "request", "serving", "wait_until_up"]


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


def predict(server: str, files: list[tuple[str, str, bytes]]) -> tuple[int, dict]:
    body, headers = multipart(files)
    return request(server + "/predict", body, headers)


@contextlib.contextmanager
def serving(model) -> Iterator[str]:
    """``create_app(model)`` served by uvicorn in a thread on a free loopback port, for the ``with`` block: its URL."""
    import uvicorn

    from lit_vision.deploy.server import create_app

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(model), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)
