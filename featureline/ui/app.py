"""The web UI's FastAPI app: server-rendered pages (featureline.ui.routes, Jinja2
templates), inline CSS and SVG, no JavaScript. Read-only: every route is a GET.

Errors are pages with a message and their status (404 for an unknown view, feature,
service, report or path; 400 for a bad lookup value), never a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from featureline.ui import operations
from featureline.ui.render import Ui, environment, page
from featureline.ui.routes import router
from featureline.ui.state import UiState

log = logging.getLogger("featureline.ui")


async def _background_scrapes(ui: Ui) -> None:
    # Rates need an earlier scrape: one now, then every interval (featureline.ui.metrics).
    while True:
        await ui.state.scraper.scrape(ui.http, ui.state.config.metrics_urls)
        await asyncio.sleep(ui.state.config.scrape_interval_s)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return page(request, "error.html", exc.status_code, title=f"{exc.status_code}", message=str(exc.detail))


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return page(request, "error.html", 400, title="400", message=message)


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("page %s failed", request.url.path)
    message = f"this page failed ({type(exc).__name__}: {exc}); the UI's log has the details"
    return page(request, "error.html", 500, title="500", message=message)


def create_app(state: UiState) -> FastAPI:
    ui = Ui(state, httpx.AsyncClient(), environment())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_background_scrapes(ui))
        # The operations page reads materialize's marks through the batch package (~1 s
        # of imports, pyarrow's): paid here, in a thread, not by the first page.
        warm = asyncio.get_running_loop().run_in_executor(
            None, importlib.import_module, operations.MARKS_MODULE
        )
        try:
            yield
        finally:
            task.cancel()
            warm.cancel()
            await ui.http.aclose()

    app = FastAPI(title="Featureline UI", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.ui = ui
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(Exception, _internal_error)
    app.include_router(router)
    return app
