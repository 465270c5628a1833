"""Run the UI: load the repo once and bind the port (a bad repo or a port in use fails
here, as one error line, before anything is announced), then serve the app with
uvicorn on one event loop (pages are read-only and cheap; one process answers a team's
browsers)."""

from __future__ import annotations

import socket
from collections.abc import Callable

from featureline.errors import BadInputError
from featureline.settings import Settings
from featureline.ui.state import UiConfig, UiState, absolute


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
    return sock


def serve(
    settings: Settings, config: UiConfig, host: str, port: int, announce: Callable[[str], None] = print
) -> None:
    import uvicorn

    from featureline.ui.app import create_app

    state = UiState.load(absolute(settings), config)
    sock = bind(host, port)
    server = uvicorn.Server(uvicorn.Config(create_app(state), log_level="warning", access_log=False))
    shown = f"[{host}]" if ":" in host else host
    announce(
        f"Featureline UI of {state.repo.project} at http://{shown}:{port}/ (serving API {config.serving_url})"
    )
    server.run(sockets=[sock])
