"""`featureline specs`: show what Featureline reads from a Feast repo."""

from __future__ import annotations

import argparse

from featureline.settings import Settings


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the full specs as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from featureline.repo import load_repo

    spec = load_repo(settings)
    if args.json:
        print(spec.to_json())
        return 0
    print(f"project {spec.project} (definitions {spec.source_fingerprint})")
    for view in spec.views.values():
        keys = ", ".join(f"{k.name}:{k.dtype}" for k in view.join_keys)
        pushed = (
            f" push source {view.push_source} (its batch source serves and materializes)"
            if view.push_source
            else ""
        )
        print(f"{view.kind} view {view.name} [{keys}] ttl={view.ttl_s}s{pushed}")
        for agg in view.aggregations:
            print(f"    {agg.name} = {agg.function}({agg.column}) window={agg.window_s}s tile={agg.tile_s}s")
        if not view.aggregations:
            print("    " + ", ".join(f"{f.name}:{f.dtype}" for f in view.features))
    for odfv in spec.on_demand_views.values():
        print(f"on-demand view {odfv.name}: " + ", ".join(odfv.feature_names))
    for service in spec.services.values():
        n = sum(len(p.features) for p in service.projections)
        print(f"feature service {service.name}: {n} features")
    for ignored in spec.ignored:
        print(f"not used: {ignored.kind} {ignored.name}: {ignored.why}")
    return 0
