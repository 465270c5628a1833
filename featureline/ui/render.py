"""Pages: Jinja2 templates (autoescaped) with the UI's number filters, and what every
route handler reads from the app (its UiState, HTTP client and template environment)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from featureline.ui.state import UiState

TEMPLATES = Path(__file__).parent / "templates"


def seconds(value: float | None) -> str:
    """A duration for people: 850 ms, 12.4 s, 3.0 min, 5.0 h, 2.0 d; "-" for none."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.1f} s"


def number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.{digits}f}"


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["seconds"] = seconds
    env.filters["number"] = number
    return env


@dataclass
class Ui:
    """Held by the app (app.state.ui) for every handler."""

    state: UiState
    # One HTTP client for the process: a new httpx client builds an SSL context (~20 ms).
    http: httpx.AsyncClient
    env: Environment


def ui_of(request: Request) -> Ui:
    ui: Ui = request.app.state.ui
    return ui


def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    ui = ui_of(request)
    body = ui.env.get_template(template).render(
        request=request, project=ui.state.repo.project, notice=ui.state.reload_error, **context
    )
    return HTMLResponse(body, status_code=status)
