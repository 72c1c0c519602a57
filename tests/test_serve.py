"""python -m lit_vision.serve: real HTTP requests against a server on a free loopback port."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_client import image_bytes, predict, request

pytest.importorskip("onnxruntime")
pytest.importorskip("uvicorn")
serving = pytest.importorskip("lit_vision.deploy.server")


def test_health_metadata_and_page(server: str) -> None:
    assert request(server + "/health") == (200, {"status": "ok"})
    status, meta = request(server + "/metadata")
    assert status == 200 and meta["classes"] == ["cat", "dog"] and meta["backend"] == "onnxruntime"
    assert meta["input"] == {"channels": 3, "height": 16, "width": 16} and isinstance(meta["threshold"], float)
    assert meta["tta"] == {"hflip": False, "translate": 0}
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


def raw_exchange(url: str, sent: bytes, wait_s: float = 10.0) -> tuple[bytes, float]:
    """Send ``sent`` on a plain socket and read until the server closes: (what came back, seconds it took)."""
    import socket
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    start = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=wait_s) as sock:
        sock.sendall(sent)
        answer = b""
        while chunk := sock.recv(65536):  # a reset here (ConnectionResetError) fails the test
            answer += chunk
    return answer, time.monotonic() - start


def json_body(answer: bytes) -> dict:
    import json

    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


def test_oversized_headers_are_answered_431_not_reset(server: str) -> None:
    big = b"x" * (300 * 1024)
    answer, _ = raw_exchange(server, b"POST /predict HTTP/1.1\r\nHost: t\r\nX-Big: " + big + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ") and "byte limit" in json_body(answer)["error"]
    assert request(server + "/health")[0] == 200


@pytest.mark.parametrize("sent", [
    b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    b"Content-Length: 1000\r\n\r\n--b\r\n",                   # a body shorter than its Content-Length
    b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Le",        # headers that stop half-way
])
def test_a_stalled_request_is_answered_408_after_the_timeout(server: str, sent: bytes) -> None:
    from conftest import SERVER_REQUEST_TIMEOUT_S

    answer, seconds = raw_exchange(server, sent)
    assert answer.startswith(b"HTTP/1.1 408 ") and "nothing more arrived" in json_body(answer)["error"]
    assert SERVER_REQUEST_TIMEOUT_S <= seconds < SERVER_REQUEST_TIMEOUT_S + 5
    status, body = predict(server, [("file", "ok.png", image_bytes())])  # the service goes on
    assert status == 200 and "predicted" in body["results"][0]


def test_onnx_serving_needs_no_torch(onnx_model: Path) -> None:
    code = ("import sys; from lit_vision.deploy.server import create_app, load_model; m = load_model(sys.argv[1]); "
            "import numpy as np; m.predict(np.zeros((1, 3, 16, 16), np.uint8)); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(onnx_model)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_run_dir_is_served_with_pytorch(cnn_run: Path) -> None:
    model = serving.load_model(cnn_run)
    assert model.backend == "pytorch" and model.class_names == ["cat", "dog"]
    probs = model.predict(np.zeros((2, 3, 16, 16), np.uint8))
    assert probs.shape == (2, 2) and model.results(probs)[0]["predicted"] in ("cat", "dog")
    with pytest.raises(serving.ModelLoadError, match="no such file"):
        serving.load_model(cnn_run / "missing.onnx")


# --- a model that cannot be served: one line naming the file and the fix, exit 1 (README), no traceback -------
def serve_fails(capsys: pytest.CaptureFixture, *argv: str) -> str:
    from lit_vision.commands.serve import main

    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    err = capsys.readouterr().err
    assert exit_info.value.code == 1, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: MODEL ") and "--model" not in err, err
    return err


def test_a_run_dir_without_checkpoints_names_the_folder_and_what_to_pass(cnn_run: Path, tmp_path: Path,
                                                                           capsys) -> None:
    run_dir = tmp_path / "pets_cnn" / "runs" / "killed"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.csv").write_text("epoch\n")
    err = serve_fails(capsys, str(run_dir))
    assert str(run_dir) in err and "checkpoints/best.ckpt" in err and "exported .onnx" in err


def test_a_damaged_checkpoint_names_the_file(cnn_run: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes((cnn_run / "checkpoints" / "best.ckpt").read_bytes()[:2000])
    err = serve_fails(capsys, str(bad))
    assert f"checkpoint {bad} is damaged" in err and "retrain" in err


@pytest.mark.parametrize("content", [b"", b"not a protobuf at all", None])
def test_a_damaged_or_foreign_onnx_names_the_file(onnx_model: Path, tmp_path: Path, capsys, content) -> None:
    bad = tmp_path / "bad.onnx"
    if content is None:  # a valid ONNX model that is not a lit_vision export
        import onnx

        proto = onnx.load(str(onnx_model))
        del proto.metadata_props[:]
        onnx.save(proto, str(bad))
        fix = "not a lit_vision export"
    else:
        bad.write_bytes(content if content else b"")
        fix = "damaged or not an ONNX model"
    err = serve_fails(capsys, str(bad))
    assert str(bad) in err and fix in err and "python -m lit_vision.export" in err


def test_the_real_command_exits_1_for_a_missing_path_and_2_for_a_usage_mistake(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.onnx"
    proc = subprocess.run([sys.executable, "-m", "lit_vision.serve", str(missing)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"error: MODEL {missing}: no such file or folder; pass a training run dir, a .ckpt, "
                                   "a lit_vision.xgb run dir or an exported .onnx")
    proc = subprocess.run([sys.executable, "-m", "lit_vision.serve"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "MODEL" in proc.stderr and "Traceback" not in proc.stderr
