"""What one `featureline ui` process holds: its configuration, the repo's specs and
catalog (re-read when a definition file changes), the metrics scraper and its recent
scrapes, the materialize marks' connection, and per-definitions caches."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from featureline.repo import load_repo, repo_files
from featureline.settings import Settings
from featureline.specs import RepoSpec
from featureline.ui.catalog import Catalog, build_catalog
from featureline.ui.metrics import Scraper
from featureline.ui.operations import MaterializeMarks

# Scrapes answer in ~1 ms on loopback; 0.5 s keeps a page under a second when one
# metrics URL hangs (unreachable ones are refused at once).
SCRAPE_TIMEOUT_S = 0.5
# Rates are taken over at least MIN_WINDOW_S and at most this between background
# scrapes (Prometheus's default scrape interval is 15 s; 10 s gives a fresher "now").
SCRAPE_INTERVAL_S = 10.0
# Definition files are stat'ed at most every 2 s (~0.1 ms for the demo repo's 4
# files): an edit shows on the next page after that, and a page never re-reads them.
RELOAD_CHECK_S = 2.0


@dataclass(frozen=True)
class UiConfig:
    serving_url: str
    stream_metrics_urls: tuple[str, ...] = ()
    models_dir: Path = Path(".featureline/models")
    reports_dir: Path = Path(".featureline/reports")
    # Where `featureline stats` / `drift` write (batch.stats.store): the offline store.
    offline_dir: Path = Path("data/offline")
    scrape_timeout_s: float = SCRAPE_TIMEOUT_S
    scrape_interval_s: float = SCRAPE_INTERVAL_S

    @property
    def serve_metrics_url(self) -> str:
        return self.serving_url.rstrip("/") + "/metrics"

    @property
    def metrics_urls(self) -> tuple[str, ...]:
        return (self.serve_metrics_url, *self.stream_metrics_urls)


def absolute(settings: Settings) -> Settings:
    """The settings with every path absolute: Feast's parse (a reload) changes the
    process's working directory for a moment, while pages read files in other threads."""
    return dataclasses.replace(
        settings,
        repo=settings.repo.resolve(),
        home=settings.home.resolve(),
        offline_dir=str(settings.resolved_offline_dir),
        specs_file=str(Path(settings.specs_file).resolve()) if settings.specs_file else "",
    )


def default_config(settings: Settings, serving_url: str | None, stream_urls: list[str] | None) -> UiConfig:
    """Serve on the settings' HTTP port of this host unless --serving-url says where."""
    return UiConfig(
        serving_url=serving_url or f"http://127.0.0.1:{settings.http_port}",
        stream_metrics_urls=tuple(stream_urls or ()),
        models_dir=settings.home / "models",
        reports_dir=settings.home / "reports",
        offline_dir=settings.resolved_offline_dir,
    )


def _stamp(settings: Settings) -> tuple[tuple[str, int, int], ...]:
    paths = [Path(settings.specs_file)] if settings.specs_file else repo_files(settings.repo)
    out = []
    for path in paths:
        try:
            st = path.stat()
            out.append((str(path), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(path), 0, 0))
    return tuple(out)


@dataclass
class UiState:
    settings: Settings
    config: UiConfig
    repo: RepoSpec
    catalog: Catalog
    scraper: Scraper
    marks: MaterializeMarks
    stamp: tuple[tuple[str, int, int], ...]
    checked_at: float = field(default_factory=time.monotonic)
    reload_error: str = ""
    # service -> fingerprint, for self.repo (cleared on reload)
    fingerprints: dict[str, str] = field(default_factory=dict)
    _reload_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def load(cls, settings: Settings, config: UiConfig) -> UiState:
        repo = load_repo(settings)
        return cls(
            settings,
            config,
            repo,
            build_catalog(repo),
            Scraper(config.scrape_timeout_s),
            MaterializeMarks(settings),
            _stamp(settings),
        )

    async def current(self) -> Catalog:
        """The catalog, re-read first if a definition file changed since the last look.
        A repo that no longer loads keeps the last good catalog, with the error shown."""
        if time.monotonic() - self.checked_at < RELOAD_CHECK_S:
            return self.catalog
        async with self._reload_lock:
            if time.monotonic() - self.checked_at < RELOAD_CHECK_S:
                return self.catalog
            stamp = await asyncio.to_thread(_stamp, self.settings)
            if stamp != self.stamp:
                await self._reload(stamp)
            self.checked_at = time.monotonic()
        return self.catalog

    async def _reload(self, stamp: tuple[tuple[str, int, int], ...]) -> None:
        from featureline.errors import FeaturelineError

        try:
            repo = await asyncio.to_thread(load_repo, self.settings)
        except FeaturelineError as exc:  # Feast's parse errors come as BadInputError
            self.reload_error = f"the definitions no longer load ({exc}); showing the last good ones"
            return
        self.repo, self.catalog, self.stamp = repo, build_catalog(repo), stamp
        self.fingerprints = {}
        self.reload_error = ""
