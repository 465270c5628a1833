"""`featureline ui`: a read-only web UI of a repo, its operations and its models.

    featureline ui --repo feature_repo --port 8888 [--serving-url URL] [--stream-metrics-url URL ...]

Pages (server-rendered HTML, inline CSS and SVG, no JavaScript):
    /                    catalog: entities, sources, views, features, services, lineage; ?q= search
    /views/V             a view's definition, features and lineage
    /features/V/F        a feature's definition, the value served now for an entity, freshness
    /services/S          a service's features and the models trained on it
    /lineage             source -> view -> on-demand view -> service -> model
    /operations          stream lag/freshness/dead letters, materialize marks, serving
                         rate and p99, consistency reports
    /models              trained models, their fingerprints and whether they still match

A tool like featureline.cli: it may import the core and every part. Modules: catalog
(rows and search), lineage (layout and SVG), metrics (scrapes, rates, quantiles),
operations, reports, models, lookup, state (the process's caches), app (routes),
server (the serving API's hardened HTTP/1.1 server, serving_api.http_server).
"""
