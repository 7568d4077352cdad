"""How long `lmwright serve` takes from a cold start: to answer `/health` at all (the port bound, the models loaded),
and to be ready (every model's decode step compiled, `/health` 200).

    pip install -e ".[bench]"          # from the repository root
    lmwright run -C DIR                # a new or empty DIR: the default project (about 9 minutes, 2 cores)
    python benchmarks/cold_start.py DIR [--runs 2] [--json]

DIR is a project that `lmwright run` has built (the default run's directory from `benchmarks/default_run.py`, say).
Each run starts a fresh `lmwright serve` process on a free port, polls `/health` every 50 ms and stops the server.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time

import httpx


def one(project: str) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lmwright", "serve", "-C", project, "--port", str(port)],
                            stderr=subprocess.PIPE, text=True)
    answered = ready = None
    try:
        while ready is None and time.perf_counter() - t0 < 600:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                answered = answered or time.perf_counter() - t0
                if r.status_code == 200:
                    ready = time.perf_counter() - t0
                    models = list(r.json()["models"])
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    return {"first_health_s": round(answered, 1) if answered else None, "ready_s": round(ready, 1) if ready else None,
            "models": models if ready else [], "log": [ln for ln in stderr.splitlines() if ln.strip()][-4:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    runs = [one(a.dir) for _ in range(a.runs)]
    if a.json:
        print(json.dumps(runs, indent=2))
        return
    for i, r in enumerate(runs, 1):
        print(f"run {i}: /health answers after {r['first_health_s']} s ('starting'), ready after {r['ready_s']} s "
              f"({', '.join(r['models'])})")


if __name__ == "__main__":
    main()
