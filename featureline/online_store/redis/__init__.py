"""Redis adapters of the online store: one node, Sentinel (sentinel.py), WAIT (durability.py)."""
