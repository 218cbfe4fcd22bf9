PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: demo test test-lens3 lint bench bench-reference clean browser

# The report tests drive Debian's Chromium through playwright: never download a browser.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet torch==2.13.0  # the CPU build, before any extra needs torch
	$(PY) -m pip install --quiet -e ".[dev,export,torch,lens,plot]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/quickstart.py

# Headless Chromium for the HTML report tests (CI runs as root on a fresh Debian).
browser:
	command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

test: $(STAMP) browser
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(PY) -m pytest -q

# TransformerLens 3.x (HookedTransformer) in a second venv: to_transformer_lens returns a
# HookedTransformer there, tested by the same tests as the TransformerBridge.
LENS3 := .venv-lens3
$(LENS3)/.installed: pyproject.toml
	$(PYTHON) -m venv $(LENS3)
	$(LENS3)/bin/python -m pip install --quiet --upgrade pip
	$(LENS3)/bin/python -m pip install --quiet torch==2.13.0
	$(LENS3)/bin/python -m pip install --quiet -e ".[dev,export]" "transformer-lens>=3,<4"
	touch $@

test-lens3: $(LENS3)/.installed
	$(LENS3)/bin/python -m pytest -q tests/export/test_lens.py

bench: $(STAMP)
	$(PY) benchmarks/craft_blocks.py
	$(PY) benchmarks/compile.py
	$(PY) benchmarks/compress.py
	$(PY) benchmarks/verify.py
	$(PY) benchmarks/numerical_maps.py

# The reference Tracr in a venv of its own, for side-by-side measurements.
REF_VENV := .venv-ref
REF_STAMP := $(REF_VENV)/.installed-ref

$(REF_STAMP):
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(REF_VENV)/bin/python -m pip install --quiet tracr-pypi jax==0.10.2 jaxlib==0.10.2 dm-haiku==0.0.17
	touch $(REF_STAMP)

bench-reference: $(STAMP) $(REF_STAMP)
	$(PY) benchmarks/reference.py --reference-python $(REF_VENV)/bin/python

clean:
	rm -rf $(VENV) $(LENS3) $(REF_VENV) build .pytest_cache
