"""The load generator of `featureline bench serve`: `generator` (HTTP/1.1 on raw
asyncio streams, gRPC through grpc.aio, closed and open loops) and `grpc_raw` (cheap
unary gRPC calls on raw HTTP/2, for small requests)."""
