"""The UI's pages, one handler each (featureline.ui.app assembles them)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException

from featureline.batch.stats.store import drift_exposition
from featureline.errors import BadInputError
from featureline.specs import RepoSpec
from featureline.ui import lineage, lookup, operations, quality, reports
from featureline.ui.catalog import Catalog, freshness_slo_s, search
from featureline.ui.models import ModelInfo, list_models
from featureline.ui.render import page, ui_of
from featureline.ui.state import UiState

router = APIRouter()


def _models(state: UiState) -> list[ModelInfo]:
    return list_models(state.config.models_dir, state.repo, state.fingerprints)


def _model_nodes(models: list[ModelInfo]) -> list[lineage.ModelNode]:
    return [lineage.ModelNode(m.name, m.service, m.fingerprint, m.current) for m in models if not m.error]


async def _graph(state: UiState, catalog: Catalog) -> lineage.Graph:
    return lineage.build_graph(catalog, _model_nodes(await asyncio.to_thread(_models, state)))


def _view_or_404(catalog: Catalog, name: str) -> None:
    if name not in catalog.repo.views and name not in catalog.repo.on_demand_views:
        known = len(catalog.repo.views) + len(catalog.repo.on_demand_views)
        raise HTTPException(404, f"unknown feature view {name!r} (the repo has {known} views)")


def _doc(repo: RepoSpec, name: str) -> Any:
    return repo.doc("view" if name in repo.views else "on_demand_view", name)


@router.get("/health", response_class=PlainTextResponse)
async def health() -> str:
    return "ok"


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, q: str = "") -> HTMLResponse:
    ui = ui_of(request)
    state = ui.state
    catalog = await state.current()
    found = search(catalog, q) if q.strip() else None
    # A search shows its results only: no catalog below, no graph to lay out.
    svg = lineage.render_svg(await _graph(state, catalog)) if found is None else ""
    return page(request, "home.html", catalog=catalog, repo=catalog.repo, q=q, found=found,
                lineage_svg=svg, slo=freshness_slo_s)  # fmt: skip


@router.get("/lineage", response_class=HTMLResponse)
async def lineage_page(request: Request, focus: str = "") -> HTMLResponse:
    ui = ui_of(request)
    state = ui.state
    catalog = await state.current()
    graph = await _graph(state, catalog)
    if focus:
        if focus not in graph.nodes:
            raise HTTPException(404, f"no node {focus!r} in the lineage graph")
        graph = lineage.neighbourhood(graph, focus)
    return page(request, "lineage.html", svg=lineage.render_svg(graph, focus), focus=focus)


@router.get("/views/{name}", response_class=HTMLResponse)
async def view_page(request: Request, name: str) -> HTMLResponse:
    ui = ui_of(request)
    state = ui.state
    catalog = await state.current()
    _view_or_404(catalog, name)
    graph = await _graph(state, catalog)
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


@router.get("/features/{view}/{feature}", response_class=HTMLResponse)
async def feature_page(request: Request, view: str, feature: str) -> HTMLResponse:
    ui = ui_of(request)
    state = ui.state
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
    window_task = asyncio.create_task(state.scraper.window(ui.http, state.config.metrics_urls))
    if entities is not None:
        result = await lookup.lookup(ui.http, state.config.serving_url, view, feature, entities)
    window = await window_task
    measured = await asyncio.to_thread(quality.feature_quality, state.config.offline_dir, view, feature)
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
        quality=measured,
        expectations=quality.feature_expectations(spec, feature, window),
    )


@router.get("/metrics")
async def metrics_page(request: Request) -> Response:
    """Prometheus text of the drift reports under the offline store
    (featureline_feature_drift, _psi, _p_value; alert FeaturelineFeatureDrift) and of
    materialize's marks (featureline_materialize_mark_timestamp_seconds; alert
    FeaturelineBatchFreshnessSLOBreach). A Redis that does not answer leaves the marks out."""
    state = ui_of(request).state
    repo = (await state.current()).repo
    text = await asyncio.to_thread(drift_exposition, state.config.offline_dir)
    marks, _ = await asyncio.to_thread(state.marks.read, repo, operations.batch_views(repo))
    text += operations.marks_exposition(marks)
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/services/{name}", response_class=HTMLResponse)
async def service_page(request: Request, name: str) -> HTMLResponse:
    ui = ui_of(request)
    state = ui.state
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


@router.get("/operations", response_class=HTMLResponse)
async def operations_page(request: Request) -> HTMLResponse:
    ui = ui_of(request)
    state = ui.state
    catalog = await state.current()
    repo = catalog.repo
    serve_task = asyncio.create_task(state.scraper.window(ui.http, [state.config.serve_metrics_url]))
    stream_task = asyncio.create_task(state.scraper.window(ui.http, state.config.stream_metrics_urls))
    marks, marks_error = await asyncio.to_thread(state.marks.read, repo, operations.batch_views(repo))
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


@router.get("/reports/{name}", response_class=HTMLResponse)
async def report_page(request: Request, name: str) -> HTMLResponse:
    ui = ui_of(request)
    state = ui.state
    report = await asyncio.to_thread(reports.find, state.config.reports_dir, name)
    if report is None:
        raise HTTPException(404, f"no consistency report {name!r} under {state.config.reports_dir}")
    return page(request, "report.html", report=report, chart=reports.features_svg(report))


@router.get("/reports/{name}/html")
async def report_file(request: Request, name: str) -> FileResponse:
    ui = ui_of(request)
    state = ui.state
    report = await asyncio.to_thread(reports.find, state.config.reports_dir, name)
    if report is None or not report.has_html:
        raise HTTPException(404, f"no consistency report page {name!r}")
    return FileResponse(state.config.reports_dir / f"{report.name}.html", media_type="text/html")


@router.get("/models", response_class=HTMLResponse)
async def models_page(request: Request) -> HTMLResponse:
    ui = ui_of(request)
    state = ui.state
    await state.current()
    models = await asyncio.to_thread(_models, state)
    return page(request, "models.html", models=models, models_dir=state.config.models_dir)
