"""Hyper-parameter search with Optuna: `lmwright tune`.

The search space is `tune.space` in the spec: any spec field, with a range or choices. Each trial is the spec
with the trial's values and `tune.trial_overrides` applied, trained by the one training loop on the train
split and scored on the validation split (the test split is never opened). The loop reports every validation
to the trial, so the pruner (median or Hyperband) can stop a poor trial early.

The study lives in the project's metadata database (Optuna's tables beside lmwright's), named from the data
and the tune section, so `lmwright tune` run again after a kill continues the same study; `tune.parallel`
processes share it. Trials a killed process left running are marked failed and do not count.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from lmwright.core.progress import Reporter
from lmwright.errors import LmwrightError
from lmwright.spec import Spec, SpecError, TuneParam, apply_override

COUNTED = ("COMPLETE", "PRUNED")


def _is_int(p: TuneParam) -> bool:
    return not p.log and all(float(v).is_integer() for v in (p.low, p.high, p.step or 1))


def grid_values(p: TuneParam, key: str) -> list[Any]:
    if p.choices is not None:
        return list(p.choices)
    if p.step is None:
        raise LmwrightError(f"tune.space.{key}: the grid sampler needs choices: [...] or a step for the range")
    n = int(round((p.high - p.low) / p.step)) + 1
    values = [p.low + i * p.step for i in range(n)]
    return [int(v) for v in values] if _is_int(p) else values


def suggest(trial, key: str, p: TuneParam) -> Any:
    if p.choices is not None:
        return trial.suggest_categorical(key, p.choices)
    if _is_int(p):
        return trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1))
    return trial.suggest_float(key, p.low, p.high, log=p.log, step=None if p.log else p.step)


def trial_spec(base: dict, values: dict[str, Any], overrides: list[str]) -> Spec:
    """The spec of one trial: the project's, then the trial overrides, then the sampled values."""
    raw = json.loads(json.dumps(base))
    for o in overrides:
        apply_override(raw, o)
    for key, value in values.items():
        apply_override(raw, f"{key}={json.dumps(value)}")
    try:
        return Spec.model_validate(raw)
    except Exception as exc:  # noqa: BLE001 - pydantic's message names the field
        raise SpecError(f"tune: the trial values {values} make an invalid spec: {exc}") from None


def check_space(spec: Spec) -> None:
    """Every key of tune.space must be a spec field; catch a typo before any trial runs."""
    base = spec.model_dump(mode="json")
    for key, p in spec.tune.space.items():
        node: Any = base
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise LmwrightError(f"tune.space: {key!r} is not a spec field (e.g. train.lr, model.d_model)")
            node = node[part]
        sample = p.choices[0] if p.choices is not None else (int(p.low) if _is_int(p) else p.low)
        trial_spec(base, {key: sample}, spec.tune.trial_overrides)
    if spec.tune.sampler == "grid":
        for key, p in spec.tune.space.items():
            grid_values(p, key)


def study_name(spec: Spec, data_digest: str) -> str:
    tune = spec.tune.model_dump(mode="json")
    tune.pop("parallel")  # more or fewer processes, or more trials: the same study, continued
    tune.pop("trials")
    h = hashlib.sha256(json.dumps([tune, data_digest, spec.model_dump(mode="json", exclude={"tune"})],
                                  sort_keys=True).encode()).hexdigest()[:12]
    return f"{spec.project.name}-{h}"


def _sampler(spec: Spec):
    import optuna

    t, seed = spec.tune, spec.project.seed
    if t.sampler == "grid":
        return optuna.samplers.GridSampler({k: grid_values(p, k) for k, p in t.space.items()}, seed=seed)
    if t.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, t.trials))


def _pruner(spec: Spec):
    import optuna

    if spec.tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if spec.tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def _load_study(storage: str, name: str, spec: Spec):
    import optuna

    return optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True,
                               sampler=_sampler(spec), pruner=_pruner(spec))


def _objective(spec_raw: dict, shards: str, tokenizer: str, init: str | None = None):
    import optuna

    from lmwright.tokenizer import load_tokenizer
    from lmwright.train.loop import pretrain

    spec = Spec.model_validate(spec_raw)
    tok = load_tokenizer(Path(tokenizer))
    init_dir = Path(init) if init else None  # train.init_from, resolved: every trial continues that model

    def objective(trial) -> float:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the enqueued baseline may sit outside a range's step grid
            values = {k: suggest(trial, k, p) for k, p in spec.tune.space.items()}
        trial.set_user_attr("pid", os.getpid())
        ts = trial_spec(spec_raw, values, spec.tune.trial_overrides)
        metric = spec.tune.metric

        def report(step: int, val_loss: float, val_bpb: float) -> bool:
            trial.report(val_bpb if metric == "val_bpb" else val_loss, step)
            return trial.should_prune()

        with tempfile.TemporaryDirectory() as work:
            r = pretrain(ts, Path(shards), tok, Path(work), Reporter(quiet=True), on_validation=report,
                         init=init_dir)
        trial.set_user_attr("steps", r.steps)
        trial.set_user_attr("seconds", round(r.seconds, 2))
        if r.steps < ts.train.max_steps:
            raise optuna.TrialPruned()
        return r.history["val_bpb" if metric == "val_bpb" else "val_loss"][-1]

    return objective


def _worker(storage: str, name: str, spec_raw: dict, shards: str, tokenizer: str, threads: int,
            init: str | None = None, first: bool = True) -> None:
    import optuna
    import torch
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = Spec.model_validate(spec_raw)
    spec_raw = {**spec_raw, "train": {**spec_raw["train"], "threads": threads}}
    study = _load_study(storage, name, spec)
    if not first:
        # SQLite cannot lock a row, so two processes can pop the same enqueued trial (the baseline) and the
        # second to finish fails with "Cannot tell a COMPLETE trial" (optuna#4002, #4621): the first process
        # takes the queue, the others start once it is empty
        deadline = time.time() + 120
        while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)) and time.time() < deadline:
            time.sleep(0.2)
    study.optimize(_objective(spec_raw, shards, tokenizer, init), n_trials=spec.tune.trials,
                   callbacks=[MaxTrialsCallback(spec.tune.trials, states=(TrialState.COMPLETE, TrialState.PRUNED))])


def counted(study) -> int:
    return sum(t.state.name in COUNTED for t in study.trials)


def run_study(spec: Spec, storage: str, shards: Path, tokenizer: Path, data_digest: str,
              reporter: Reporter, init: Path | None = None) -> tuple[Any, str, int]:
    """Run (or continue) the study to `tune.trials` counted trials; returns (study, name, trials resumed). `init`
    is the model every trial starts from (`train.init_from`, resolved)."""
    import optuna
    from optuna.trial import TrialState

    check_space(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name(spec, data_digest)
    study = _load_study(storage, name, spec)
    for t in study.trials:  # left running by a killed process: they will never finish
        if t.state == TrialState.RUNNING:
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
    if not study.trials and spec.tune.sampler != "grid":  # trial 0: the spec as it is, the baseline to beat
        base = spec.model_dump(mode="json")
        current = {}
        for key in spec.tune.space:
            node: Any = base
            for part in key.split("."):
                node = node[part]
            current[key] = node
        study.enqueue_trial(current, skip_if_exists=True)
    done = counted(study)
    if done:
        reporter.log(f"  tune: continuing study {name}: {done} of {spec.tune.trials} trials already done")
    if done < spec.tune.trials:
        n = spec.tune.parallel
        threads = spec.train.threads or max(1, (os.cpu_count() or 1) // n)
        args = (storage, name, spec.model_dump(mode="json"), str(shards), str(tokenizer), threads,
                str(init) if init else None)
        if n == 1:
            _worker(*args)
        else:
            ctx = mp.get_context("spawn")
            procs = [ctx.Process(target=_worker, args=(*args, i == 0)) for i in range(n)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            if any(p.exitcode for p in procs):
                raise LmwrightError("a tuning process failed; run `lmwright tune` again to continue the study")
    return _load_study(storage, name, spec), name, done


def write_outputs(study, spec: Spec, out: Path) -> dict:
    """trials.csv, best.yaml (a spec overlay), importances.json and the plots, in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as vis

    out.mkdir(parents=True, exist_ok=True)
    trials = study.trials
    keys = list(spec.tune.space)
    lines = ["number,state," + ",".join(keys) + f",{spec.tune.metric},steps,seconds"]
    for t in trials:
        lines.append(",".join([str(t.number), t.state.name.lower(), *[str(t.params.get(k, "")) for k in keys],
                               "" if t.value is None else f"{t.value:.6f}", str(t.user_attrs.get("steps", "")),
                               str(t.user_attrs.get("seconds", ""))]))
    (out / "trials.csv").write_text("\n".join(lines) + "\n")
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if not complete:
        raise LmwrightError("no trial completed; widen tune.space or use tune.pruner: none")
    best = study.best_trial
    overlay: dict = {}
    for key, value in best.params.items():
        node = overlay
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    (out / "best.yaml").write_text(f"# best of {len(trials)} trials ({spec.tune.metric} {best.value:.4f}); "
                                   "apply with: lmwright run --set KEY=VALUE, or merge into lmwright.yaml\n"
                                   + yaml.safe_dump(overlay, sort_keys=True))
    importances: dict = {}
    if len(complete) >= 2 and len(keys) >= 2:
        try:
            importances = {k: round(v, 4) for k, v in optuna.importance.get_param_importances(study).items()}
        except (RuntimeError, ValueError):  # e.g. every trial the same value
            importances = {}
    (out / "importances.json").write_text(json.dumps(importances, indent=2))
    plots = {"optimization_history.png": lambda: vis.plot_optimization_history(study)}
    if len(complete) >= 2:
        plots["parallel_coordinate.png"] = lambda: vis.plot_parallel_coordinate(study)
        plots["slice.png"] = lambda: vis.plot_slice(study)
    import warnings

    for fname, make in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
            ax = make()
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
        fig.set_size_inches(8, 4.5)
        fig.savefig(out / fname, dpi=100, bbox_inches="tight")
        plt.close(fig)
    states = {s: sum(t.state.name.lower() == s for t in trials) for s in ("complete", "pruned", "fail")}
    return {"trials": len(trials), **states, "best_value": best.value, "best_params": best.params,
            "importances": importances, "plots": sorted(plots)}


def tune_project(ws, shards: Path, tokenizer_dir: Path, data_digest: str, reporter: Reporter) -> tuple[Any, dict]:
    """`lmwright tune` on a project: the study (resumed when it exists), its outputs in `lmwright-out/tune/` (the
    report card shows them), and an audit record; returns (the study, its summary)."""
    from lmwright.core.models import init_model
    from lmwright.core.store import Store

    init = init_model(ws)
    if init is not None:  # a moved alias is another starting point: another study
        data_digest = f"{data_digest}+{init[2]}"
    study, name, resumed = run_study(ws.spec, ws.store_url, shards, tokenizer_dir, data_digest, reporter,
                                     init[0] if init else None)
    out_dir = ws.out_dir / "tune"
    res = {"study": name, "resumed_trials": resumed, **write_outputs(study, ws.spec, out_dir),
           "outputs": str(out_dir)}
    Store(ws.store_url).audit("tune", study=name, trials=res["trials"], best_value=res["best_value"],
                              best_params=res["best_params"])
    return study, res
