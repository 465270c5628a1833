"""Featureline's serving API: gRPC + REST servers (`featureline serve`) and a client SDK.

Nothing heavy is imported here: `featureline serve --help` and the bench table import
submodules of this package for their argparse options only.
"""
