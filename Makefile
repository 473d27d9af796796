# The two commands of the README: `make run` and `make test`. Both set up .venv when needed.
# `run` installs pyginx with its runtime dependencies only; `test` and `lint` add the test extras.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TESTSTAMP := $(VENV)/.installed-test

.PHONY: run stop test lint bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

$(TESTSTAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(TESTSTAMP)

run: $(STAMP)
	$(BIN)/pyginx -p . -c conf/pyginx.yaml

# graceful shutdown of the server `make run` started (from another terminal): pyginx -s quit
stop: $(STAMP)
	$(BIN)/pyginx -p . -c conf/pyginx.yaml -s quit

test: $(TESTSTAMP)
	$(BIN)/python -m pytest -q

lint: $(TESTSTAMP)
	$(BIN)/ruff check pyginx tests bench
	$(BIN)/mypy

bench: $(TESTSTAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# minutes of mixed load with reloads and reopens; fails when fds or RSS grow past bench/soak.py's
# bounds (not part of `make test`). SOAK_ARGS="--server nginx" runs the same soak against nginx.
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) logs
