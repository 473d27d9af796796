# The two commands of the README: `make run` and `make test`. Both set up .venv when needed.
# `run` installs pyginx with its runtime dependencies only; `test` and `lint` add the test extras.
# Both build the compiled hot path (mypyc, about a minute and a half the first time) when they can and
# fall back to the pure-Python package, which is complete on its own, when they cannot (no C compiler).
# `make test-pure` runs the suite without the compiled modules; CI runs both.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TESTSTAMP := $(VENV)/.installed-test
COMPILEDSTAMP := $(VENV)/.compiled
COMPILED_LIST := pyginx/_compiled_modules.txt
# pyginx.http.connection -> pyginx/http/connection.py
COMPILED_SRCS := $(shell sed -e 's|\.|/|g' -e 's|$$|.py|' $(COMPILED_LIST))
JOBS := $(shell nproc 2>/dev/null || echo 2)

.PHONY: run stop test test-pure test-compiled lint bench soak clean compiled clean-compiled

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

$(TESTSTAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(TESTSTAMP)

# the compiled hot path (mypyc: about 2-3x less CPU per request, README "Compiled build"): built in
# place beside the sources, which Python then imports instead of the .py files
compiled: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[compiled]'
	rm -rf build
	PYGINX_COMPILE=1 $(BIN)/python setup.py -q build_ext --inplace -j $(JOBS) >/dev/null
	touch $(COMPILEDSTAMP)

clean-compiled:
	find pyginx -name '*.so' -delete
	rm -rf build $(COMPILEDSTAMP)

# best effort, redone when a compiled module's source changes
$(COMPILEDSTAMP): $(STAMP) $(COMPILED_LIST) $(COMPILED_SRCS) setup.py
	@echo "make: building the compiled modules (mypyc, about a minute and a half)"
	@$(MAKE) -s compiled || { echo "make: the compiled build failed; pyginx runs as pure Python"; \
		$(MAKE) -s clean-compiled; touch $(COMPILEDSTAMP); }

run: $(STAMP) $(COMPILEDSTAMP)
	$(BIN)/pyginx -p . -c conf/pyginx.yaml

# graceful shutdown of the server `make run` started (from another terminal): pyginx -s quit
stop: $(STAMP)
	$(BIN)/pyginx -p . -c conf/pyginx.yaml -s quit

# the suite on what `make run` runs: the compiled build when it could be made
test: $(TESTSTAMP) $(COMPILEDSTAMP)
	$(BIN)/python -m pytest -q

test-compiled: test

# the same suite on the pure-Python package (the compiled modules are removed; the next `make run` or
# `make test` builds them again)
test-pure: $(TESTSTAMP) clean-compiled
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
