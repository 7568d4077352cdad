"""Where training figures go besides the progress bar and the metadata store: optional TensorBoard and
MLflow writers."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lmwright.core.packages import extra_hint
from lmwright.errors import LmwrightError


class MetricWriters:
    """Scalars to each writer named in `train.log_to`; a writer whose package is missing is a clear error."""

    def __init__(self, names: list[str], log_dir: Path | None, run_name: str):
        self._tb = self._mlflow = None
        if "tensorboard" in names:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise LmwrightError("train.log_to names tensorboard but it is not installed: "
                                    f"{extra_hint('tracking')} (or remove it from train.log_to)") from None
            self._tb = SummaryWriter(log_dir=str((log_dir or Path("runs")) / "tensorboard" / _stamp()))
        if "mlflow" in names:
            try:
                import mlflow
            except ImportError:
                raise LmwrightError("train.log_to names mlflow but it is not installed: "
                                    f"{extra_hint('tracking')} (or remove it from train.log_to)") from None
            if "MLFLOW_TRACKING_URI" not in os.environ and log_dir is not None:
                mlflow.set_tracking_uri(f"sqlite:///{(log_dir / 'mlflow.db').resolve()}")
            mlflow.set_experiment(run_name or "lmwright")
            self._mlflow = mlflow
            mlflow.start_run(run_name=f"pretrain-{_stamp()}")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)
        if self._mlflow is not None:
            self._mlflow.log_metrics({k.replace("/", "_"): float(v) for k, v in values.items()}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._mlflow is not None:
            self._mlflow.end_run()


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")
