"""The serving tests' HTTP client: images as bytes, JSON requests, uploads to /predict (ports, multipart bodies and
the wait for /health come from :mod:`lit_vision.deploy.http_client`, which the load benchmark uses too)."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

from PIL import Image

from lit_vision.deploy.http_client import free_port, multipart, wait_until_up

__all__ = ["free_port", "image_bytes", "multipart", "predict", "request", "wait_until_up"]


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
