"""Redis adapters of the online-store seam: one node, Redis Cluster, Sentinel."""
