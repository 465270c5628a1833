"""The online-store seam (issue 13): the interface the jobs and servers call, and its adapters."""
