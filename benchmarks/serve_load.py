"""A bounded load on ``python -m lit_vision.serve`` over loopback: N concurrent clients for T seconds, good photos
with bad uploads mixed in; prints requests/s, images/s, latency percentiles and error counts.

    python -m lit_vision.export outputs/showcase/horse_cnn_op                    # → model.onnx in the run dir
    python benchmarks/serve_load.py outputs/showcase/horse_cnn_op/model.onnx \\
        --images ../shared/datasets/cifar10-jpeg/test --clients 16 --seconds 30 --bad-every 5

The server runs in a child process (``python -m lit_vision.serve``) on a free port; the clients are threads
sending one photo per request (every ``--bad-every``-th request a non-image). A good request that does not come
back 200 with a prediction counts as failed; a bad upload must come back 400 with an error. ``--json FILE`` writes
the printed summary (requests/s, images/s, latency percentiles in ms, failure counts) as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lit_vision.deploy.http_client import free_port, multipart, wait_until_up


def post(url: str, name: str, content: bytes) -> tuple[int, bytes]:
    body, headers = multipart([("file", name, content)])
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="an exported .onnx, a run dir or a .ckpt")
    ap.add_argument("--images", type=Path, required=True, help="a folder of good photos (searched recursively)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--bad-every", type=int, default=5, help="every N-th request uploads a non-image (0: none)")
    ap.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = ap.parse_args(argv)
    photos = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:500]
    if not photos:
        raise SystemExit(f"no .jpg/.png photos under {args.images}")
    contents = [(p.name, p.read_bytes()) for p in photos]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "lit_vision.serve", args.model, "--port", str(port)])
    try:
        try:
            wait_until_up(url, proc, timeout=120)
        except RuntimeError as exc:
            raise SystemExit(str(exc)) from None
        results: list[tuple[bool, int, bool, float]] = []  # (bad upload?, status, ok?, seconds)
        lock, stop = threading.Lock(), time.monotonic() + args.seconds
        counter = iter(range(10 ** 9))

        def client(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                bad = args.bad_every > 0 and next(counter) % args.bad_every == args.bad_every - 1
                name, content = ("junk.txt", b"not an image at all") if bad else rng.choice(contents)
                start = time.perf_counter()
                status, body = post(url + "/predict", name, content)
                elapsed = time.perf_counter() - start
                ok = status == 400 and b"error" in body if bad else status == 200 and b"predicted" in body
                with lock:
                    results.append((bad, status, ok, elapsed))

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        began = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - began
    finally:
        proc.terminate()
        proc.wait(10)
    good = [r for r in results if not r[0]]
    latencies = sorted(r[3] for r in good)

    def pct(q):
        return 1e3 * latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    summary = {"clients": args.clients, "seconds": round(wall, 1), "requests": len(results),
               "requests_per_s": len(results) / wall, "images_per_s": sum(r[2] for r in good) / wall,
               "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
               "mean_ms": 1e3 * statistics.mean(latencies) if latencies else float("nan"),
               "good_failed": sum(not r[2] for r in good), "bad_sent": len(results) - len(good),
               "bad_not_refused": sum(not r[2] for r in results if r[0])}
    table = Table(title=f"lit_vision.serve under load: {args.model}")
    for key in summary:
        table.add_column(key, justify="right")
    table.add_row(*[f"{v:,.1f}" if isinstance(v, float) else str(v) for v in summary.values()])
    Console(width=200).print(table)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
