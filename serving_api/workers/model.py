"""The fraud model: a small MLP over a FeatureService's tensor, its input normalization
and missing-value handling inside the module, and its file format.

Imports torch at the top: import this module only on the train / worker / bench paths
(`featureline --help` must not pay torch's ~1.5 s import).

Input handling, all inside `FraudMLP.forward` so that training and serving cannot
drift apart:
- a value that is not PRESENT takes the column's fill: the definition's declared value
  (an empty window's count or sum is 0, semantics.md 2), else the training mean;
- values go through asinh (amounts and sums span 1..1e5: a signed log keeps the MLP's
  inputs in a few units) and are standardized with the training set's statistics;
- columns without a declared value get a mask input (1 = missing), so the model can
  tell "missing" from "equal to the mean". A column with a declared value is never
  missing in the definitions' sense and gets no mask.

Scores do not depend on batching: the model runs on fixed blocks of `block_rows` rows
(the last one zero-padded), because a BLAS matmul of 1 row and of 4096 rows sums in
different orders (measured: ~75% of single-row scores differed in the last bits).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from featureline.errors import BadInputError
from featureline.serving_api.workers.fingerprint import meta_sidecar

FORMAT_VERSION = 1
# Rows per model call. 64 on CPU: one call of 64 rows of 40 inputs costs ~25 us, the
# same as 1 row; 1024 on CUDA, where a call costs ~the kernel launches, whatever the rows.
BLOCK_ROWS = {"cpu": 64, "cuda": 1024}
# A standardized input beyond +-8 is an outlier the MLP never saw in training.
Z_CLIP = 8.0


@dataclass(frozen=True)
class Normalization:
    """Per column, in asinh space: the fill for a missing value, center and scale."""

    fill: tuple[float, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    masked: tuple[bool, ...]  # columns that get a "missing" input


def fit_normalization(values: np.ndarray, present: np.ndarray, defaults: list[float | None]) -> Normalization:
    """Statistics of the present values of each column (values [rows, cols] float)."""
    fill, center, scale = [], [], []
    for j, default in enumerate(defaults):
        seen = np.arcsinh(values[present[:, j].astype(bool), j].astype(np.float64))
        mean = float(seen.mean()) if seen.size else 0.0
        std = float(seen.std()) if seen.size > 1 else 0.0
        center.append(mean)
        scale.append(std if std > 1e-6 else 1.0)  # a constant column: leave it at 0
        fill.append(mean if default is None else float(np.arcsinh(default)))
    masked = tuple(d is None for d in defaults)
    return Normalization(tuple(fill), tuple(center), tuple(scale), masked)


class FraudMLP(nn.Module):
    """(values, present) [rows, cols] -> fraud logit [rows]."""

    fill: torch.Tensor
    center: torch.Tensor
    scale: torch.Tensor
    masked: torch.Tensor  # indices of the columns with a "missing" input

    def __init__(self, norm: Normalization, hidden: tuple[int, ...] = (64, 32)) -> None:
        super().__init__()
        n = len(norm.center)
        self.register_buffer("fill", torch.tensor(norm.fill, dtype=torch.float32))
        self.register_buffer("center", torch.tensor(norm.center, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(norm.scale, dtype=torch.float32))
        masked = [j for j, m in enumerate(norm.masked) if m]
        self.register_buffer("masked", torch.tensor(masked, dtype=torch.long))
        layers: list[nn.Module] = []
        width = n + len(masked)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        here = present.bool()
        x = torch.where(here, torch.asinh(values), self.fill)
        z = ((x - self.center) / self.scale).clamp(-Z_CLIP, Z_CLIP)
        missing = (~here.index_select(1, self.masked)).to(z.dtype)
        return self.net(torch.cat([z, missing], dim=1)).squeeze(1)


@dataclass(frozen=True)
class ModelMeta:
    """Everything a worker checks before scoring, saved beside the weights."""

    service: str
    fingerprint: str
    columns: tuple[str, ...]
    norm: Normalization
    hidden: tuple[int, ...]
    training: dict[str, Any]  # rows, positives, epochs, metrics: for people, not code
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        d = json.loads(text)
        norm = Normalization(**{k: tuple(v) for k, v in d["norm"].items()})
        return cls(
            service=d["service"],
            fingerprint=d["fingerprint"],
            columns=tuple(d["columns"]),
            norm=norm,
            hidden=tuple(d["hidden"]),
            training=d["training"],
            format_version=d["format_version"],
        )


def save_model(path: Path, model: FraudMLP, meta: ModelMeta) -> None:
    """One file: weights and meta. Written to a temp file and renamed (no half files).
    The meta is copied beside it as JSON (fingerprint.meta_sidecar) for readers without
    torch; the model file stays the one that counts (load_model reads only it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"meta": meta.to_json(), "state": state}, tmp)
    os.replace(tmp, path)
    sidecar = meta_sidecar(path)
    tmp_meta = sidecar.with_name(f".{sidecar.name}.tmp{os.getpid()}")
    tmp_meta.write_text(meta.to_json())
    os.replace(tmp_meta, sidecar)


def load_model(path: Path, device: str = "cpu") -> tuple[FraudMLP, ModelMeta]:
    """The model in eval mode on `device`, and its meta (BadInputError if unreadable)."""
    if not path.is_file():
        raise BadInputError(f"model file {str(path)!r} does not exist (train one: featureline train)")
    try:
        # weights_only: a model file is data, never code to run.
        saved = torch.load(path, map_location=device, weights_only=True)
        meta = ModelMeta.from_json(saved["meta"])
    except Exception as exc:  # a torn, foreign or tampered file: say which, no trace
        raise BadInputError(f"{str(path)!r} is not a Featureline model file ({exc})") from None
    if meta.format_version != FORMAT_VERSION:
        raise BadInputError(
            f"{str(path)!r} has model format {meta.format_version}; this version reads "
            f"{FORMAT_VERSION}: retrain with featureline train"
        )
    model = FraudMLP(meta.norm, meta.hidden)
    model.load_state_dict(saved["state"])
    return model.to(device).eval(), meta


def single_threaded_cpu() -> None:
    """One intra-op thread for CPU inference: a 64-row block of this MLP takes ~75 us on
    one thread and ~100 us on two (measured), and extra OpenMP threads spin against the
    serving API and Redis on the same cores. Process-wide: call it in a worker."""
    torch.set_num_threads(1)


class Scorer:
    """Scores numpy batches with a model on one device, in fixed blocks of rows.

    Not thread-safe: one Scorer per thread (its staging buffers are reused: pinned on
    CUDA, where allocating pinned memory per call costs more than the copy)."""

    def __init__(self, model: FraudMLP, device: str, block_rows: int | None = None) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.block_rows = block_rows or BLOCK_ROWS.get(self.device.type, 64)
        self._values = torch.zeros(0)
        self._present = torch.zeros(0, dtype=torch.uint8)

    def _staging(self, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._values.shape[0] < rows or self._values.shape[1:] != (cols,):
            pin = self.device.type == "cuda"
            self._values = torch.zeros((rows, cols), dtype=torch.float32, pin_memory=pin)
            self._present = torch.zeros((rows, cols), dtype=torch.uint8, pin_memory=pin)
        return self._values[:rows], self._present[:rows]

    def score(self, values: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Fraud probabilities float32 [rows] for values float32 and present (bool or
        uint8: 1 where the value was served) [rows, cols]."""
        rows = values.shape[0]
        if rows == 0:
            return np.zeros(0, dtype=np.float32)
        block = self.block_rows
        padded = -(-rows // block) * block
        v, p = self._staging(padded, values.shape[1])
        v[:rows] = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
        p[:rows] = torch.from_numpy(np.ascontiguousarray(present, dtype=np.uint8))
        v[rows:] = 0.0
        p[rows:] = 0
        if self.device.type != "cpu":
            v = v.to(self.device, non_blocking=True)
            p = p.to(self.device, non_blocking=True)
        with torch.inference_mode():
            out = [
                torch.sigmoid(self.model(v[i : i + block], p[i : i + block])) for i in range(0, padded, block)
            ]
            scores = torch.cat(out)[:rows]
        return scores.cpu().numpy()
