"""The HTTP service behind ``python -m lit_vision.serve``: FastAPI + uvicorn around one model.

An exported ``.onnx`` model is served with onnxruntime alone (this module imports neither torch nor Lightning for
it); a run dir or ``.ckpt`` goes through :mod:`lit_vision.deploy.inference`. Every upload is decoded exactly as training
decoded images (:func:`lit_vision.imaging.decode_image`), all images of a request are classified as one batch,
and inference runs in a worker thread so the event loop keeps answering. Bad input is answered with a 4xx JSON
error naming the problem, never with a crash.
"""


import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lit_vision.deploy.operating_point import decide
from lit_vision.errors import LitVisionError
from lit_vision.imaging import decode_image

#: request limits: a body over MAX_BODY_BYTES is refused with 413 before it is read; at most MAX_FILES per request
MAX_BODY_BYTES = 20 * 1024 * 1024
MAX_FILES = 64


class ServeError(LitVisionError):
    """The model to serve could not be loaded."""


@dataclass
class ServedModel:
    """What the service needs of a model: its classes, input format, threshold and a uint8 → probabilities call."""

    name: str
    class_names: list[str]
    channels: int
    size: tuple[int, int]
    threshold: float | None
    predict: Callable[[np.ndarray], np.ndarray]
    backend: str

    def metadata(self) -> dict[str, Any]:
        meta = {"model": self.name, "backend": self.backend, "classes": self.class_names,
                "input": {"channels": self.channels, "height": self.size[0], "width": self.size[1]},
                "threshold": self.threshold}
        if self.threshold is not None:
            meta["positive_class"] = self.class_names[1]
        return meta

    def decide(self, probs: np.ndarray) -> list[dict[str, Any]]:
        """Per image: the probability of each class, the predicted class, and the decision at the threshold."""
        out = []
        for p, index in zip(probs, decide(probs, self.threshold)):
            entry: dict[str, Any] = {"probabilities": {c: float(v) for c, v in zip(self.class_names, p)},
                                     "predicted": self.class_names[int(index)]}
            if self.threshold is not None:
                entry["decision"] = {"positive": bool(index == 1), "class": self.class_names[int(index)],
                                     "threshold": self.threshold}
            out.append(entry)
        return out


def load_onnx(path: Path) -> ServedModel:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    if "class_names" not in meta or "input" not in meta:
        raise ServeError(f"{path}: not a lit_vision export (no class_names/input metadata); export it with "
                         "python -m lit_vision.export <run dir>")
    spec = json.loads(meta["input"])
    threshold = float(meta["threshold"]) if "threshold" in meta else None

    def predict(images: np.ndarray) -> np.ndarray:
        return session.run(None, {"images": images})[0]

    return ServedModel(path.stem, json.loads(meta["class_names"]), int(spec["channels"]),
                       (int(spec["height"]), int(spec["width"])), threshold, predict, "onnxruntime")


def load_model(spec: str | Path) -> ServedModel:
    """An exported ``.onnx`` file (onnxruntime), or a run dir / ``.ckpt`` (PyTorch)."""
    path = Path(spec).expanduser()
    if not path.exists():
        raise ServeError(f"{spec}: no such file or folder; pass a run dir, a .ckpt or an exported .onnx")
    if path.suffix == ".onnx":
        return load_onnx(path)
    from lit_vision.deploy.inference import load_predictor

    pred = load_predictor(str(path))
    return ServedModel(pred.name, list(pred.class_names), pred.channels, pred.image_size, pred.threshold,
                       pred.predict, "pytorch")


def create_app(model: ServedModel) -> Any:
    """The FastAPI application: ``GET /``, ``GET /health``, ``GET /metadata``, ``POST /predict``."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(title="lit_vision", description=f"serving {model.name}")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, f"invalid request: {exc.errors()}")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return model.metadata()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return error(413, f"request body is {int(length):,} bytes, over the {MAX_BODY_BYTES:,}-byte limit")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error(415, "send the images as multipart/form-data with one 'file' field per image")
        try:
            form = await request.form(max_files=MAX_FILES, max_part_size=MAX_BODY_BYTES)
        except Exception as exc:  # noqa: BLE001 — a malformed or oversized form is the client's error
            return error(400, f"could not read the multipart form: {exc}")
        uploads = [item for key, item in form.multi_items() if key == "file"]
        if not uploads:
            return error(422, "no 'file' field in the form: send each image as a 'file' field")
        entries: list[dict[str, Any]] = []
        images, slots = [], []
        for upload in uploads:
            name = getattr(upload, "filename", None) or "(unnamed)"
            if isinstance(upload, str):
                entries.append({"file": name, "error": "'file' must be a file upload, not a text field"})
                continue
            data = await upload.read()
            try:
                images.append(await run_in_threadpool(decode_image, data, model.channels, model.size))
                slots.append(len(entries))
                entries.append({"file": name})
            except Exception as exc:  # noqa: BLE001 — every decoding failure is this file's error, reported
                entries.append({"file": name, "error": f"not a readable image: {exc}"})
        if images:
            probs = await run_in_threadpool(model.predict, np.stack(images))
            for slot, result in zip(slots, model.decide(probs)):
                entries[slot].update(result)
        status = 200 if images else 400
        return JSONResponse({"model": model.name, "results": entries}, status_code=status)

    return app


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lit_vision</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}#drop{border:2px dashed #888;padding:2em;
text-align:center}#result{margin-top:1em;font-size:1.2em}</style></head>
<body><h1>lit_vision</h1><p id="model">loading…</p>
<div id="drop">Drop a photo here or <input type="file" id="file" accept="image/*"></div>
<div id="result" role="status" data-state="idle"></div>
<script>
const result = document.getElementById('result');
function show(state, text) { result.dataset.state = state; result.textContent = text; }
fetch('/metadata').then(r => r.json()).then(m => {
  document.getElementById('model').textContent = 'model ' + m.model + ': ' + m.classes.join(' / ') +
    (m.threshold === null ? '' : ' (threshold ' + m.threshold.toFixed(3) + ')');
});
function send(file) {
  if (!file) return;
  show('pending', 'classifying ' + file.name + '…');
  const form = new FormData(); form.append('file', file);
  fetch('/predict', {method: 'POST', body: form}).then(async resp => {
    const j = await resp.json().catch(() => ({}));
    const r = (j.results || [])[0];
    if (!r || r.error) {
      show('error', 'error: ' + file.name + ': ' + (r ? r.error : j.error || 'HTTP ' + resp.status));
      return;
    }
    show('decision', file.name + ' → decision: ' + r.predicted + ' (' + Object.entries(r.probabilities).map(([c, p]) =>
      c + ' ' + p.toFixed(3)).join(', ') + ')');
  }).catch(e => show('error', 'error: ' + file.name + ': no answer from the server (' + e + ')'));
}
// reset the input so that picking the same file again is a new upload
document.getElementById('file').addEventListener('change', e => { send(e.target.files[0]); e.target.value = ''; });
const drop = document.getElementById('drop');
drop.addEventListener('dragover', e => e.preventDefault());
drop.addEventListener('drop', e => { e.preventDefault(); send(e.dataTransfer.files[0]); });
</script></body></html>
"""
