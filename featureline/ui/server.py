"""Run the UI: load the repo once and bind the port (a bad repo or a port in use fails
here, as one error line, before anything is announced), then serve the app on one event
loop (pages are read-only and cheap; one process answers a team's browsers).

The app is served by the serving API's own HTTP/1.1 server (serving_api.http_server,
which runs an ASGI app for every path it has no handler for), not uvicorn: that server
has the limits of the hardened edge (issue 14: request line and header sizes, header,
body, idle and send timeouts that a trickle does not extend, pipelining and connection
caps), the same `--http-*` flags as `featureline serve`, and the hostile-client cases
run against it; uvicorn never closes a slowloris connection."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import Callable
from typing import Any

from featureline.errors import BadInputError
from featureline.serving_api.http_server import HttpServer
from featureline.serving_api.limits import Limits
from featureline.settings import Settings
from featureline.ui.state import UiConfig, UiState, absolute

# Requests in flight get this long to finish on SIGTERM/SIGINT.
_STOP_GRACE_S = 1.0


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BadInputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def serve(
    settings: Settings,
    config: UiConfig,
    host: str,
    port: int,
    announce: Callable[[str], None] = print,
    limits: Limits | None = None,
) -> None:
    from featureline.ui.app import create_app

    state = UiState.load(absolute(settings), config)
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    announce(
        f"Featureline UI of {state.repo.project} at http://{shown}:{port}/ (serving API {config.serving_url})"
    )
    asyncio.run(_serve(create_app(state), sock, limits or Limits()))


async def _serve(app: Any, sock: socket.socket, limits: Limits) -> None:
    """Until SIGTERM or SIGINT."""
    http = HttpServer({}, app, limits)
    await http.start(sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await http.stop(_STOP_GRACE_S)
