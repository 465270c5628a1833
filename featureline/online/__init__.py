"""The online store's Redis layout: Feast's own format for latest values, ours for tiles."""
