"""Lineage as a server-rendered SVG: source -> view -> on-demand view -> service ->
the models trained on that service. A layered layout computed here (pure, no library):
one column per kind, the order in each column chosen by the barycenter heuristic
(Sugiyama's crossing reduction: a node sits near the mean position of its neighbours
in the previous column, then the next one, a few sweeps each way).

For 1,000 features in ~100 views the graph has ~200 nodes: layout and SVG take ~2 ms.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field

from featureline.ui.catalog import Catalog

COLUMNS = ("source", "view", "on_demand_view", "service", "model")
# Node box and gaps (px); labels are cut to fit the box at ~7 px per character.
NODE_W = 190
NODE_H = 34
ROW_GAP = 12
COL_GAP = 90
_CHARS = 26
# Down-then-up sweeps of the barycenter ordering: 4 settle the demo's and a generated
# 100-view repo's order (a 5th changes nothing there).
SWEEPS = 4
FILL = {
    "kafka": "#8ecae6",
    "file": "#cfe8f3",
    "push": "#b8e0d2",
    "stream": "#ffb703",
    "batch": "#f4a261",
    "on_demand_view": "#cdb4db",
    "service": "#90be6d",
    "model": "#43aa8b",
    "model_stale": "#e63946",
}


@dataclass
class Node:
    id: str
    column: str
    label: str
    detail: str  # second line: a topic, a kind, a fingerprint
    href: str
    fill: str
    x: float = 0.0
    y: float = 0.0


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add(self, node: Node) -> None:
        self.nodes.setdefault(node.id, node)

    def link(self, a: str, b: str) -> None:
        if a in self.nodes and b in self.nodes and (a, b) not in self.edges:
            self.edges.append((a, b))


@dataclass(frozen=True)
class ModelNode:
    """A trained model as the graph shows it (featureline.ui.models.ModelInfo)."""

    name: str
    service: str
    fingerprint: str
    current: bool | None  # None: its service is no longer defined


def build_graph(catalog: Catalog, models: Iterable[ModelNode] = ()) -> Graph:
    repo = catalog.repo
    g = Graph()
    for src in catalog.sources:
        g.add(
            Node(
                f"source:{src.name}",
                "source",
                src.name,
                f"{src.kind}: {src.where}",
                f"/#source-{src.name}",
                FILL[src.kind],
            )
        )
    for name, view in sorted(repo.views.items()):
        g.add(Node(f"view:{name}", "view", name, f"{view.kind} view", f"/views/{name}", FILL[view.kind]))
        for source in catalog.view_sources.get(name, ()):
            g.link(f"source:{source}", f"view:{name}")
    for name in sorted(repo.on_demand_views):
        g.add(
            Node(
                f"view:{name}",
                "on_demand_view",
                name,
                "on-demand view",
                f"/views/{name}",
                FILL["on_demand_view"],
            )
        )
    for name, odfv in sorted(repo.on_demand_views.items()):
        for upstream, _ in odfv.sources:
            g.link(f"view:{upstream}", f"view:{name}")
    for name, views in catalog.service_views.items():
        g.add(
            Node(f"service:{name}", "service", name, "feature service", f"/services/{name}", FILL["service"])
        )
        for view_name in views:
            g.link(f"view:{view_name}", f"service:{name}")
    for m in models:
        state = {True: "current", False: "STALE", None: "service gone"}[m.current]
        fill = FILL["model"] if m.current else FILL["model_stale"]
        g.add(Node(f"model:{m.name}", "model", m.name, f"{m.fingerprint} {state}", "/models", fill))
        g.link(f"service:{m.service}", f"model:{m.name}")
    layout(g)
    return g


def neighbourhood(g: Graph, node_id: str) -> Graph:
    """The node, everything upstream and everything downstream of it."""
    keep = {node_id}
    for forward in (True, False):
        frontier = [node_id]
        while frontier:
            here = frontier.pop()
            for a, b in g.edges:
                nxt = b if forward and a == here else a if not forward and b == here else None
                if nxt is not None and nxt not in keep:
                    keep.add(nxt)
                    frontier.append(nxt)
    sub = Graph({k: Node(**{**vars(n)}) for k, n in g.nodes.items() if k in keep})
    sub.edges = [(a, b) for a, b in g.edges if a in keep and b in keep]
    layout(sub)
    return sub


def _barycenter(order: list[str], pos: dict[str, float], neighbours: dict[str, list[str]]) -> list[str]:
    def key(item: tuple[int, str]) -> float:
        index, node = item
        near = [pos[n] for n in neighbours.get(node, ()) if n in pos]
        return sum(near) / len(near) if near else float(index)

    return [n for _, n in sorted(enumerate(order), key=key)]


def layout(g: Graph) -> None:
    """Set each node's x, y: columns by kind (empty ones dropped), order by barycenters."""
    columns = [
        [n.id for n in sorted(g.nodes.values(), key=lambda n: n.label) if n.column == c] for c in COLUMNS
    ]
    columns = [c for c in columns if c]
    preds: dict[str, list[str]] = {}
    succs: dict[str, list[str]] = {}
    for a, b in g.edges:
        succs.setdefault(a, []).append(b)
        preds.setdefault(b, []).append(a)
    for _ in range(SWEEPS):
        for sweep, neighbours in ((range(1, len(columns)), preds), (range(len(columns) - 2, -1, -1), succs)):
            for i in sweep:
                pos = {n: float(j) for col in columns for j, n in enumerate(col)}
                columns[i] = _barycenter(columns[i], pos, neighbours)
    tallest = max((len(c) for c in columns), default=0)
    for i, col in enumerate(columns):
        offset = (tallest - len(col)) * (NODE_H + ROW_GAP) / 2
        for j, node_id in enumerate(col):
            node = g.nodes[node_id]
            node.x = 10 + i * (NODE_W + COL_GAP)
            node.y = 10 + offset + j * (NODE_H + ROW_GAP)


def _cut(text: str) -> str:
    return text if len(text) <= _CHARS else text[: _CHARS - 1] + "\u2026"


def _node_svg(n: Node, focus: str) -> str:
    stroke = ' stroke="#111" stroke-width="3"' if n.id == focus else ' stroke="#555"'
    return (
        f'<a href="{html.escape(n.href)}">'
        f'<g class="node" data-kind="{n.column}" data-id="{html.escape(n.id)}">'
        f"<title>{html.escape(n.label)} ({html.escape(n.detail)})</title>"
        f'<rect x="{n.x:.0f}" y="{n.y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="6" '
        f'fill="{n.fill}"{stroke}/>'
        f'<text x="{n.x + 8:.0f}" y="{n.y + 14:.0f}" font-size="12" font-weight="bold">'
        f"{html.escape(_cut(n.label))}</text>"
        f'<text x="{n.x + 8:.0f}" y="{n.y + 28:.0f}" font-size="10" fill="#333">'
        f"{html.escape(_cut(n.detail))}</text></g></a>"
    )


def _edge_svg(a: Node, b: Node) -> str:
    x1, y1 = a.x + NODE_W, a.y + NODE_H / 2
    x2, y2 = b.x, b.y + NODE_H / 2
    if x2 <= x1:  # same column (an on-demand view over another): a loop on the right
        x2, bend = b.x + NODE_W, NODE_W / 3
        return (
            f'<path d="M{x1:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f} {x2 + bend:.0f},{y2:.0f} '
            f'{x2:.0f},{y2:.0f}" class="edge" marker-end="url(#arrow)"/>'
        )
    mid = (x1 + x2) / 2
    return (
        f'<path d="M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}" '
        'class="edge" marker-end="url(#arrow)"/>'
    )


def render_svg(g: Graph, focus: str = "") -> str:
    """The graph as one <svg> element (inline in a page; no script, no external file)."""
    if not g.nodes:
        return (
            '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="30" class="lineage">'
            '<text x="4" y="20">nothing to draw</text></svg>'
        )
    width = max(n.x for n in g.nodes.values()) + NODE_W + 20
    height = max(n.y for n in g.nodes.values()) + NODE_H + 20
    edges = "".join(_edge_svg(g.nodes[a], g.nodes[b]) for a, b in g.edges)
    nodes = "".join(_node_svg(n, focus) for n in g.nodes.values())
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" '
        'role="img" aria-label="lineage graph">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#666"/>'
        "</marker></defs>"
        "<style>.edge{fill:none;stroke:#888;stroke-width:1.3}</style>"
        f"{edges}{nodes}</svg>"
    )
