"""Trained models under <home>/models (`featureline train`): service, fingerprint,
validation AUC, and whether the repo's current definitions still match them.

A model's meta is read from its JSON sidecar (serving_api.workers.fingerprint.
meta_sidecar, written by save_model) without importing torch (~1.5 s). A model saved
before sidecars existed, or whose sidecar is older than it, is read once with torch
when torch is installed (load_model), and cached by (mtime, size) so that a page
never pays for it twice.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featureline.errors import FeaturelineError
from featureline.serving_api.workers.fingerprint import meta_sidecar, service_fingerprint
from featureline.specs import RepoSpec


@dataclass(frozen=True)
class ModelInfo:
    name: str  # file name without .pt
    path: Path
    service: str
    fingerprint: str
    validation_auc: float | None
    training: dict[str, Any]
    current_fingerprint: str  # of the service now ("" when it is no longer defined)
    error: str = ""  # why the meta could not be read

    @property
    def current(self) -> bool | None:
        """True: the definitions match; False: they changed; None: service gone."""
        if not self.current_fingerprint:
            return None
        return self.current_fingerprint == self.fingerprint


_cache: dict[Path, tuple[tuple[int, int], dict[str, Any] | str]] = {}
_cache_lock = threading.Lock()


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_mtime_ns, st.st_size


def _read_with_torch(path: Path) -> dict[str, Any] | str:
    try:
        from featureline.serving_api.workers.model import load_model
    except ImportError:
        return "no meta sidecar beside it, and torch (featureline[ml]) is not installed to read it"
    try:
        meta = load_model(path)[1]
    except FeaturelineError as exc:
        return str(exc)
    parsed: dict[str, Any] = json.loads(meta.to_json())
    return parsed


def read_meta(path: Path) -> dict[str, Any] | str:
    """The model's meta as a dict, or a message saying why it cannot be read."""
    stamp = _stamp(path)
    with _cache_lock:
        cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    sidecar = meta_sidecar(path)
    meta: dict[str, Any] | str
    try:
        fresh = sidecar.stat().st_mtime_ns >= stamp[0]
        meta = json.loads(sidecar.read_text()) if fresh else _read_with_torch(path)
    except FileNotFoundError:
        meta = _read_with_torch(path)
    except (OSError, ValueError) as exc:
        meta = f"{sidecar.name} cannot be read: {exc}"
    if isinstance(meta, dict) and not {"service", "fingerprint"} <= meta.keys():
        meta = f"{sidecar.name} is not a Featureline model meta"
    with _cache_lock:
        _cache[path] = (stamp, meta)
    return meta


def _auc(training: dict[str, Any]) -> float | None:
    value = training.get("validation_auc")
    return float(value) if isinstance(value, int | float) else None


def list_models(
    models_dir: Path, repo: RepoSpec, fingerprints: dict[str, str] | None = None
) -> list[ModelInfo]:
    """Every *.pt under `models_dir`, by name. `fingerprints` caches service ->
    fingerprint across calls for one RepoSpec (computing one costs ~0.2 ms a view)."""
    fingerprints = {} if fingerprints is None else fingerprints
    out = []
    for path in sorted(models_dir.glob("*.pt")) if models_dir.is_dir() else []:
        try:
            meta = read_meta(path)
        except OSError as exc:  # removed between the listing and the read
            meta = str(exc)
        if isinstance(meta, str):
            out.append(ModelInfo(path.stem, path, "", "", None, {}, "", error=meta))
            continue
        service = str(meta["service"])
        if service not in fingerprints:
            fingerprints[service] = service_fingerprint(repo, service) if service in repo.services else ""
        training = meta.get("training") or {}
        out.append(
            ModelInfo(
                path.stem,
                path,
                service,
                str(meta["fingerprint"]),
                _auc(training),
                training,
                fingerprints[service],
            )
        )
    return out
