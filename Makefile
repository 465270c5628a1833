# Two entry points on a bare machine (see README):
#   make demo  - create .venv, install, start the embedded stack, run the whole pipeline once
#   make test  - create .venv, install, run the full test suite against real services
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install compile demo test lint typecheck bench clean mutation

install: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	# uv resolves and installs the ~150 dependencies in ~40 s (pip: several minutes).
	# Extra `dev` = the test tools + `all` (every part and the dev stack; pyproject.toml).
	$(PY) -m pip install -q --disable-pip-version-check uv || true
	if [ -x $(VENV)/bin/uv ]; then \
	  $(VENV)/bin/uv pip install -q --python $(PY) -e '.[dev]'; \
	else \
	  $(PY) -m pip install -q -e '.[dev]'; \
	fi
	# torch (extra `ml`) through pip, pinned: pip takes the local CPU wheel (find-links);
	# uv would resolve the multi-GB CUDA build from PyPI.
	$(PY) -m pip install -q torch==2.13.0
	# serving_api/_gen: written by the editable build (setup.py) too, but uv may keep an
	# existing editable install without building it again; same grpcio-tools pin.
	$(PY) -m featureline.cli.protos_build
	# docker-compose (Debian's, v1) validates docker-compose.yml in the tests; no engine needed.
	# promtool (Debian's prometheus package) checks and unit-tests deploy/monitoring's alert
	# rules in the tests. chromium + chromium-driver (Debian's) run the web UI's browser
	# tests (tests/ui) headless through Selenium.
	command -v docker-compose >/dev/null && command -v promtool >/dev/null \
	  && command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  || { apt-get update -qq && apt-get install -y -qq docker-compose prometheus chromium chromium-driver; } \
	  || echo "warning: could not install docker-compose/prometheus/chromium; tests/test_compose.py, tests/serving/test_monitoring.py and tests/ui will fail"
	# wrk (Debian's) drives `featureline bench serve`'s second batch-1 REST phase
	# (benchmarks/loadgen/wrk.py); apart, so that its absence never costs the above.
	command -v wrk >/dev/null || apt-get install -y -qq wrk \
	  || { apt-get update -qq && apt-get install -y -qq wrk; } \
	  || echo "warning: could not install wrk; featureline bench serve skips its wrk phase"
	touch $(STAMP)

# The serving hot path as C extensions (mypyc, ~2 min; a no-op when fresh). A source
# edited since makes `featureline.serving_api` skip the build and import the sources
# (slower, with a warning; nothing is deleted) until this rebuilds it.
compile: install
	$(PY) -m featureline.cli.compile

demo: compile
	$(VENV)/bin/featureline demo

# PYTHONDONTWRITEBYTECODE cleared for the run: where the environment sets it (as some CI
# images do) no import is ever cached, and uv installs without .pyc files, so every
# `featureline` child process of the suite (servers, stream jobs, CLI runs: hundreds)
# compiled its imports from source again: `import apache_beam` 6.2 s of CPU without
# bytecode, 2.4 s with; pyspark.sql 0.7 s -> 0.25 s. With it cleared, the first import
# of each module writes its .pyc (into .venv and the checkout's ignored __pycache__).
test: compile
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -q

# Deliberate bugs in the value rules, one at a time: the suite must fail for each
# (tests/mutation/run.py; ~10 min on 2 cores, not part of `make test`). On the Python
# sources: a compiled serving build would run instead of the mutant, so no `compile`.
mutation: install
	PYTHONPATH=. $(PY) tests/mutation/run.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy featureline benchmarks

clean:
	rm -rf $(VENV) .featureline feature_repo/data build
	find featureline/ serving_api/ -name '*.so' -delete; rm -f ./*__mypyc*.so
