"""Redis adapters of the online-store seam: one node (`store`, `aio`), with its
connections (`connect`), scripts (`scripts`) and the raw pipelined writer (`pipe`)."""
