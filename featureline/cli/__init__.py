"""The `featureline` command and the tooling it fronts: subcommands (`commands/`),
the embedded dev stack (`devstack/`), the demo's event generator (`generator/`), the
demo itself, the build helpers (gRPC code generation, the mypyc build), and the tools
that compose two parts: online/offline consistency (`consistency/`: serving reads vs
batch retrieval) and model training (`training.py`: batch retrieval feeds the
serving part's workers).

This package sits above every part (streaming, batch, serving_api) and may import any
of them; nothing below it imports it (tests/test_import_graph.py).
"""

from featureline.cli.main import main

__all__ = ["main"]
