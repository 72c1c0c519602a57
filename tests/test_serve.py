"""python -m lit_vision.serve: real HTTP requests against a server on a free loopback port."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


pytest.importorskip("onnxruntime")
uvicorn = pytest.importorskip("uvicorn")
serving = pytest.importorskip("lit_vision.serving")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def onnx_model(cli_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lit_vision.onnx_export import export

    return export(cli_run, tmp_path_factory.mktemp("serve") / "pets.onnx")["path"]


@pytest.fixture(scope="module")
def server(onnx_model: Path):
    port = free_port()
    config = uvicorn.Config(serving.create_app(serving.load_model(onnx_model)), host="127.0.0.1", port=port,
                            log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


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


def test_health_metadata_and_page(server: str) -> None:
    assert request(server + "/health") == (200, {"status": "ok"})
    status, meta = request(server + "/metadata")
    assert status == 200 and meta["classes"] == ["cat", "dog"] and meta["backend"] == "onnxruntime"
    assert meta["input"] == {"channels": 3, "height": 16, "width": 16} and isinstance(meta["threshold"], float)
    status, page = request(server + "/")
    assert status == 200 and "/predict" in page and "<input type=\"file\"" in page


def test_several_images_get_probabilities_and_a_decision(server: str, pets_root: Path) -> None:
    files = sorted(f for f in (pets_root / "test").rglob("*") if f.is_file())[:3]
    status, body = predict(server, [("file", f.name, f.read_bytes()) for f in files])
    assert status == 200 and len(body["results"]) == 3
    for entry in body["results"]:
        assert sum(entry["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert entry["decision"]["class"] == entry["predicted"] in ("cat", "dog")
        assert entry["decision"]["positive"] == (entry["probabilities"]["dog"] >= entry["decision"]["threshold"])


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "I;16", "CMYK"])
def test_every_image_mode_is_decoded(server: str, mode: str) -> None:
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "I;16" else "PNG")
    status, body = predict(server, [("file", f"x.{fmt.lower()}", image_bytes((40, 30), mode, fmt))])
    assert status == 200 and "error" not in body["results"][0]


def bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, format="PNG")  # 100 megapixels, a few kB on disk
    return buf.getvalue()


@pytest.mark.parametrize("name, content, problem", [
    ("notes.txt", b"hello, not an image", "not a readable image"),
    ("empty.png", b"", "empty file"),
    ("cut.png", image_bytes()[:40], "not a readable image"),
    ("huge.png", bomb(), "decompression"),
])
def test_a_bad_upload_is_a_4xx_naming_the_problem_and_the_next_request_works(server: str, name: str,
                                                                          content: bytes, problem: str) -> None:
    status, body = predict(server, [("file", name, content)])
    assert status == 400 and problem in body["results"][0]["error"] and body["results"][0]["file"] == name
    status, body = predict(server, [("file", "ok.png", image_bytes()), ("file", name, content)])
    assert status == 200 and "predicted" in body["results"][0] and problem in body["results"][1]["error"]


def test_requests_that_are_not_image_uploads_are_refused(server: str, monkeypatch) -> None:
    status, body = request(server + "/predict", b'{"file": 1}', {"Content-Type": "application/json"})
    assert status == 415 and "multipart/form-data" in body["error"]
    status, body = predict(server, [("image", "a.png", image_bytes())])
    assert status == 422 and "'file'" in body["error"]
    monkeypatch.setattr(serving, "MAX_BODY_BYTES", 1000)
    status, body = predict(server, [("file", "big.png", image_bytes((64, 64), fmt="BMP"))])
    assert status == 413 and "limit" in body["error"]
    assert request(server + "/health")[0] == 200


def test_onnx_serving_needs_no_torch(onnx_model: Path) -> None:
    code = ("import sys; from lit_vision.serving import load_model; m = load_model(sys.argv[1]); "
            "import numpy as np; m.predict(np.zeros((1, 3, 16, 16), np.uint8)); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(onnx_model)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_run_dir_is_served_with_pytorch(cnn_run: Path) -> None:
    model = serving.load_model(cnn_run)
    assert model.backend == "pytorch" and model.class_names == ["cat", "dog"]
    probs = model.predict(np.zeros((2, 3, 16, 16), np.uint8))
    assert probs.shape == (2, 2) and model.decide(probs)[0]["predicted"] in ("cat", "dog")
    with pytest.raises(serving.ServeError, match="no such file"):
        serving.load_model(cnn_run / "missing.onnx")
