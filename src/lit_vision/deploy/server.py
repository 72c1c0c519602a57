"""The HTTP service behind ``python -m lit_vision.serve``: FastAPI + uvicorn around one
:class:`~lit_vision.deploy.model.DeployedModel`.

An exported ``.onnx`` model is served with onnxruntime alone (this module imports neither torch nor Lightning for
it); a run dir or ``.ckpt`` with its checkpoint backend. Either way it is the run's evaluation path: every upload is
decoded exactly as evaluation decoded images (:meth:`DeployedModel.decode`), test-time augmentation is applied, and
the decision is taken at the run's operating point. All images of a request are classified as one batch, and
inference runs in a worker thread so the event loop keeps answering. Bad input is answered with a 4xx JSON error
naming the problem, never with a crash.
"""


from typing import Any

import numpy as np

from lit_vision.deploy.loader import load_model
from lit_vision.deploy.model import DeployedModel, ModelLoadError

__all__ = ["MAX_BODY_BYTES", "MAX_FILES", "ModelLoadError", "create_app", "load_model", "uvicorn_config"]

#: request limits: a body over MAX_BODY_BYTES is refused with 413 before it is read; at most MAX_FILES per request
MAX_BODY_BYTES = 20 * 1024 * 1024
MAX_FILES = 64


def create_app(model: DeployedModel) -> Any:
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
                images.append(await run_in_threadpool(model.decode, data))
                slots.append(len(entries))
                entries.append({"file": name})
            except Exception as exc:  # noqa: BLE001 — every decoding failure is this file's error, reported
                entries.append({"file": name, "error": f"not a readable image: {exc}"})
        if images:
            probs = await run_in_threadpool(model.predict, np.stack(images))
            for slot, result in zip(slots, model.results(probs)):
                entries[slot].update(result)
        status = 200 if images else 400
        return JSONResponse({"model": model.name, "results": entries}, status_code=status)

    return app


def uvicorn_config(model: DeployedModel, host: str, port: int, request_timeout: float | None = None) -> Any:
    """The service's uvicorn configuration: the app on uvicorn's h11 protocol with the 431 and 408 answers of
    :mod:`lit_vision.deploy.http_protocol` (``request_timeout`` seconds; None: its default)."""
    import uvicorn

    from lit_vision.deploy.http_protocol import guarded_protocol

    return uvicorn.Config(create_app(model), host=host, port=port, log_level="warning",
                          http=guarded_protocol(request_timeout))


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
