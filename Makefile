# `make run` runs one ingestion cycle on the built-in defaults; `make test` is CI's command.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench bench-dedup bench-polling bench-articles bench-lake bench-templated constraints clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# A partial run (exit 1: some source failed, e.g. every feed when offline) is not a
# make error: the run's table already names the failed sources.
run: $(STAMP)
	@$(BIN)/newsbeam run $(ARGS); status=$$?; \
	if [ $$status -eq 1 ]; then echo "make run: partial run: the sources marked error above failed"; exit 0; fi; \
	exit $$status

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

bench-dedup: $(STAMP)
	$(BIN)/python -m bench.dedup $(ARGS)

bench-polling: $(STAMP)
	$(BIN)/python -m bench.polling $(ARGS)
bench-articles: $(STAMP)
	$(BIN)/python -m bench.articles $(ARGS)
bench-lake: $(STAMP)
	$(BIN)/python -m bench.lake $(ARGS)
bench-templated: $(STAMP)
	$(BIN)/python -m bench.templated $(ARGS)
.PHONY: bench-langid bench-staging bench-realnews bench-memory
bench-memory: $(STAMP)
	$(BIN)/python -m bench.memory $(ARGS)
bench-realnews: $(STAMP)
	$(BIN)/python -m bench.realnews $(ARGS)
bench-staging: $(STAMP)
	$(BIN)/python -m bench.staging $(ARGS)
bench-langid: $(STAMP)
	$(BIN)/python -m bench.langid $(ARGS)

constraints: $(STAMP)
	(echo '# Every dependency pinned (Python 3.11, Linux x86_64). Regenerate with: make constraints'; \
	 $(BIN)/python -m pip freeze --exclude-editable | grep -v '^newsbeam') > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
