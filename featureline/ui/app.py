"""The web UI's FastAPI app: server-rendered pages (Jinja2 templates, autoescaped), inline
CSS and SVG, no JavaScript. Read-only: every route is a GET.

Errors are pages with a message and their status (404 for an unknown view, feature,
service or report; 400 for a bad lookup value), never a trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException

from featureline.errors import BadInputError
from featureline.ui import lineage, lookup, operations, reports
from featureline.ui.catalog import Catalog, freshness_slo_s, search
from featureline.ui.models import ModelInfo, list_models
from featureline.ui.state import UiState

log = logging.getLogger("featureline.ui")
TEMPLATES = Path(__file__).parent / "templates"


def _seconds(value: float | None) -> str:
    """A duration for people: 850 ms, 12.4 s, 3.0 min, 5.0 h, 2.0 d; "-" for none."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.1f} s"


def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.{digits}f}"


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    env.filters["seconds"] = _seconds
    env.filters["number"] = _number
    return env


def _models(state: UiState) -> list[ModelInfo]:
    return list_models(state.config.models_dir, state.repo, state.fingerprints)


def _model_nodes(models: list[ModelInfo]) -> list[lineage.ModelNode]:
    return [lineage.ModelNode(m.name, m.service, m.fingerprint, m.current) for m in models if not m.error]


def create_app(state: UiState) -> FastAPI:
    env = environment()

    def page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        body = env.get_template(template).render(
            request=request, project=state.repo.project, notice=state.reload_error, **context
        )
        return HTMLResponse(body, status_code=status)

    # One HTTP client for the process: a new httpx client builds an SSL context (~20 ms).
    http = httpx.AsyncClient()

    async def background_scrapes() -> None:
        # Rates need an earlier scrape: one now, then every interval (featureline.ui.metrics).
        while True:
            await state.scraper.scrape(http, state.config.metrics_urls)
            await asyncio.sleep(state.config.scrape_interval_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(background_scrapes())
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
            await http.aclose()

    app = FastAPI(title="Featureline UI", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return page(
            request, "error.html", exc.status_code, title=f"{exc.status_code}", message=str(exc.detail)
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return page(request, "error.html", 400, title="400", message=message)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception("page %s failed", request.url.path)
        message = f"this page failed ({type(exc).__name__}: {exc}); the UI's log has the details"
        return page(request, "error.html", 500, title="500", message=message)

    @app.get("/health", response_class=PlainTextResponse)
    async def health() -> str:
        return "ok"

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request, q: str = "") -> HTMLResponse:
        catalog = await state.current()
        found = search(catalog, q) if q.strip() else None
        graph = lineage.build_graph(catalog, _model_nodes(await asyncio.to_thread(_models, state)))
        return page(
            request,
            "home.html",
            catalog=catalog,
            repo=catalog.repo,
            q=q,
            found=found,
            lineage_svg=lineage.render_svg(graph),
            slo=freshness_slo_s,
        )

    @app.get("/lineage", response_class=HTMLResponse)
    async def lineage_page(request: Request, focus: str = "") -> HTMLResponse:
        catalog = await state.current()
        graph = lineage.build_graph(catalog, _model_nodes(await asyncio.to_thread(_models, state)))
        if focus:
            if focus not in graph.nodes:
                raise HTTPException(404, f"no node {focus!r} in the lineage graph")
            graph = lineage.neighbourhood(graph, focus)
        return page(request, "lineage.html", svg=lineage.render_svg(graph, focus), focus=focus)

    def _view_or_404(catalog: Catalog, name: str) -> None:
        if name not in catalog.repo.views and name not in catalog.repo.on_demand_views:
            known = len(catalog.repo.views) + len(catalog.repo.on_demand_views)
            raise HTTPException(404, f"unknown feature view {name!r} (the repo has {known} views)")

    @app.get("/views/{name}", response_class=HTMLResponse)
    async def view_page(request: Request, name: str) -> HTMLResponse:
        catalog = await state.current()
        _view_or_404(catalog, name)
        graph = lineage.build_graph(catalog, _model_nodes(await asyncio.to_thread(_models, state)))
        svg = lineage.render_svg(lineage.neighbourhood(graph, f"view:{name}"), f"view:{name}")
        repo = catalog.repo
        return page(
            request,
            "view.html",
            repo=repo,
            name=name,
            view=repo.views.get(name),
            odfv=repo.on_demand_views.get(name),
            doc=_doc(repo, name),
            lineage_svg=svg,
            features=[f for f in catalog.features if f.view == name],
            services=catalog.services_of(name),
            slo=freshness_slo_s,
        )

    @app.get("/features/{view}/{feature}", response_class=HTMLResponse)
    async def feature_page(request: Request, view: str, feature: str) -> HTMLResponse:
        catalog = await state.current()
        _view_or_404(catalog, view)
        row = catalog.feature(view, feature)
        if row is None:
            raise HTTPException(404, f"feature view {view!r} has no feature {feature!r}")
        fields = lookup.lookup_fields(catalog.repo, view)
        form = {f.name: request.query_params.get(f.name, "") for f in fields}
        status, result, problem = 200, None, ""
        try:
            entities = lookup.entities_of(fields, form)
        except BadInputError as exc:
            status, entities, problem = 400, None, str(exc)
        window_task = asyncio.create_task(state.scraper.window(http, state.config.metrics_urls))
        if entities is not None:
            result = await lookup.lookup(http, state.config.serving_url, view, feature, entities)
        window = await window_task
        spec = catalog.repo.views.get(view)
        stream = None
        if spec is not None and spec.stream_source is not None:
            stream = operations.quantiles(window, operations.FRESHNESS, "topic", spec.stream_source.topic)
        return page(
            request,
            "feature.html",
            status,
            repo=catalog.repo,
            row=row,
            view=spec,
            odfv=catalog.repo.on_demand_views.get(view),
            fields=fields,
            form=form,
            result=result,
            problem=problem,
            serving_url=state.config.serving_url,
            slo_s=freshness_slo_s(spec) if spec else None,
            stream=stream,
            served=operations.served_age(window, view),
            window=window,
            doc=catalog.repo.doc("field", row.ref),
            services=catalog.services_of(view),
        )

    @app.get("/services/{name}", response_class=HTMLResponse)
    async def service_page(request: Request, name: str) -> HTMLResponse:
        catalog = await state.current()
        service = catalog.repo.services.get(name)
        if service is None:
            raise HTTPException(404, f"unknown feature service {name!r}")
        models = [m for m in await asyncio.to_thread(_models, state) if m.service == name]
        graph = lineage.build_graph(catalog, _model_nodes(models))
        svg = lineage.render_svg(lineage.neighbourhood(graph, f"service:{name}"), f"service:{name}")
        return page(
            request,
            "service.html",
            name=name,
            service=service,
            models=models,
            lineage_svg=svg,
            doc=catalog.repo.doc("service", name),
            repo=catalog.repo,
        )

    @app.get("/operations", response_class=HTMLResponse)
    async def operations_page(request: Request) -> HTMLResponse:
        catalog = await state.current()
        repo = catalog.repo
        serve_task = asyncio.create_task(state.scraper.window(http, [state.config.serve_metrics_url]))
        stream_task = asyncio.create_task(state.scraper.window(http, state.config.stream_metrics_urls))
        batch_views = [n for n, v in sorted(repo.views.items()) if v.kind == "batch" and not v.is_label_view]
        marks, marks_error = await asyncio.to_thread(state.marks.read, repo, batch_views)
        batch = await asyncio.to_thread(operations.batch_rows, repo, state.settings, marks)
        listed = await asyncio.to_thread(reports.list_reports, state.config.reports_dir)
        serve_w, stream_w = await serve_task, await stream_task
        return page(
            request,
            "operations.html",
            stream=operations.stream_rows(repo, stream_w),
            stream_window=stream_w,
            serving=operations.serving_rows(serve_w),
            serve_window=serve_w,
            batch=batch,
            marks_error=marks_error,
            reports=listed,
            trend_svg=reports.trend_svg(listed),
            config=state.config,
        )

    @app.get("/reports/{name}", response_class=HTMLResponse)
    async def report_page(request: Request, name: str) -> HTMLResponse:
        report = await asyncio.to_thread(reports.find, state.config.reports_dir, name)
        if report is None:
            raise HTTPException(404, f"no consistency report {name!r} under {state.config.reports_dir}")
        return page(request, "report.html", report=report, chart=reports.features_svg(report))

    @app.get("/reports/{name}/html")
    async def report_file(name: str) -> FileResponse:
        report = await asyncio.to_thread(reports.find, state.config.reports_dir, name)
        if report is None or not report.has_html:
            raise HTTPException(404, f"no consistency report page {name!r}")
        return FileResponse(state.config.reports_dir / f"{report.name}.html", media_type="text/html")

    @app.get("/models", response_class=HTMLResponse)
    async def models_page(request: Request) -> HTMLResponse:
        await state.current()
        models = await asyncio.to_thread(_models, state)
        return page(request, "models.html", models=models, models_dir=state.config.models_dir)

    return app


def _doc(repo: Any, name: str) -> Any:
    kind = "view" if name in repo.views else "on_demand_view"
    return repo.doc(kind, name)
