"""The online-store seam and its adapters (issue 13). The seam itself lands separately;
this package holds the Redis adapters meanwhile."""
