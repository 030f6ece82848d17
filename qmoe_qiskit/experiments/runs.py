"""Run folders: ``config.json``, ``results.json``, ``report.md`` and figures, written atomically."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunFolder", "summarize"]


class RunFolder:
    """A folder for one command's outputs (``runs/<command>-<timestamp>/`` by default)."""

    def __init__(self, command: str, out: str | Path | None = None):
        if out is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            out = Path("runs") / f"{command}-{stamp}"
        self.path = Path(out)
        self.path.mkdir(parents=True, exist_ok=True)

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, default=_jsonable) + "\n")

    def write_text(self, name: str, text: str) -> Path:
        target = self.path / name
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
        return target

    def save_figure(self, name: str, figure) -> Path:
        target = self.path / name
        figure.savefig(target, dpi=120)
        return target


def summarize(values: list[float]) -> dict[str, Any]:
    """``{"mean", "std", "per_seed"}`` with the sample standard deviation (ddof=1)."""
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "per_seed": [float(v) for v in arr]}


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
