"""Failover tests: a primary SIGKILLed while `featureline stream` writes and
`featureline serve` reads (tests/failover/failover_helpers.py has the run and its checks).

The stream tests' helpers (tests/streaming/stream_helpers.py: the oracle checks of what
serve answers) are imported from their folder, which pytest puts on sys.path only when
it collects tests/streaming itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

_STREAMING = str(Path(__file__).resolve().parents[1] / "streaming")
if _STREAMING not in sys.path:
    sys.path.append(_STREAMING)
