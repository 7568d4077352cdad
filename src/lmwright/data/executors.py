"""Running a data function over shards: in parallel, and resumable after a kill.

`run_shards(fn, n_shards, work, ...)` calls `fn(shard_index, out_dir)` for each shard whose result is not
already in `work/shard-NNNNN/` (a shard directory is written to a temporary name and renamed when complete, so
a killed run leaves only whole shards). A rerun therefore computes only the shards that were unfinished, and
since each shard is a pure function of its input, the concatenated result equals an uninterrupted run's.
Workers are spawned processes (forking next to the progress display's thread could deadlock); one worker runs
in-process, which is also what tests and tiny corpora use. With `kind="ray"` the same shard function runs as
Ray tasks (a local Ray instance, or a cluster at `ray_address` whose workers share the work directory).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ShardFn = Callable[[int, Path], dict[str, Any]]


def shard_dir(work: Path, i: int) -> Path:
    return work / f"shard-{i:05d}"


def _run_one(fn: ShardFn, i: int, work: Path) -> dict[str, Any]:
    final = shard_dir(work, i)
    tmp = work / f".tmp-shard-{i:05d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    result = fn(i, tmp)
    (tmp / "result.json").write_text(json.dumps(result))
    os.replace(tmp, final)
    return result


def _run_ray(fn: ShardFn, todo: list[int], work: Path, address: str | None,
             on_done: Callable[[int], None]) -> dict[int, dict[str, Any]]:
    try:
        import ray
    except ImportError:
        from lmwright.core.packages import extra_hint
        from lmwright.errors import LmwrightError

        raise LmwrightError(f"data.executor.kind is 'ray' but Ray is not installed: {extra_hint('ray')}") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        remote = ray.remote(_run_one)
        pending = {remote.remote(fn, i, work): i for i in todo}
        results: dict[int, dict[str, Any]] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ready[0])
            results[i] = ray.get(ready[0])
            on_done(i)
        return results
    finally:
        if started:
            ray.shutdown()


def run_shards(fn: ShardFn, n_shards: int, work: Path, workers: int | None = None,
               on_done: Callable[[int], None] = lambda i: None, kind: str = "local",
               ray_address: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """Results in shard order, and how many shards were already done (resumed)."""
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob(".tmp-shard-*"):  # half-written by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    results: dict[int, dict[str, Any]] = {}
    for i in range(n_shards):
        done = shard_dir(work, i) / "result.json"
        if done.exists():
            results[i] = json.loads(done.read_text())
            on_done(i)
    resumed = len(results)
    todo = [i for i in range(n_shards) if i not in results]
    workers = min(workers or os.cpu_count() or 1, max(1, len(todo)))
    if kind == "ray" and todo:
        results.update(_run_ray(fn, todo, work, ray_address, on_done))
    elif workers == 1:
        for i in todo:
            results[i] = _run_one(fn, i, work)
            on_done(i)
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_run_one, fn, i, work): i for i in todo}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                on_done(futures[fut])
    return [results[i] for i in range(n_shards)], resumed
