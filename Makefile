PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench clean browser

# The report tests drive Debian's Chromium through playwright: never download a browser.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/quickstart.py

# Headless Chromium for the HTML report tests (CI runs as root on a fresh Debian).
browser:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

test: $(STAMP) browser
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/craft_blocks.py
	$(PY) benchmarks/compile.py
	$(PY) benchmarks/verify.py

clean:
	rm -rf $(VENV) build .pytest_cache
