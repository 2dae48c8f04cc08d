# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-fast install bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency list changes, so a second `make test` starts in seconds.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The tests also cover --engine ray on a local Ray: they need the ray extra, which `make demo` does not.
$(RAY_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,ray]'
	touch $(RAY_STAMP)

install: $(STAMP)

# The audit of the bundled samples exits 1 because its planted problems fail the policy;
# that is the expected outcome of the demo, not an error of make.
demo: $(STAMP)
	$(BIN)/audit samples --offline --out reports/samples --format terminal,json,html,markdown; rc=$$?; \
	  if [ $$rc -gt 1 ]; then exit $$rc; fi; \
	  echo "demo: reports/samples/report.{json,html,md} written (audit exit code $$rc: the planted problems fail the policy)"

# The HTML report is tested in headless Chromium: install it once if missing (CI runs as root).
test: $(RAY_STAMP)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "warning: could not install chromium; browser tests will skip"
	$(BIN)/python -m pytest -q

# The fast unit tests (no real backbone over real photos, no permutation tests) on every core: the edit-test loop.
test-fast: $(RAY_STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n auto

bench: $(STAMP)
	$(BIN)/python bench/bench_audit.py

clean:
	rm -rf $(VENV) build *.egg-info
