# Every target creates .venv if it is missing. torch==2.13.0 is installed first and
# explicitly: the CPU wheel is on local disk, and an unpinned install would pull a
# multi-GB CUDA build. Never install torchvision (it breaks beside this torch).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   := $(VENV)/.torch
# Two installs: `make demo` gets the package and what its pictures need (the plots extra);
# test, bench and lint get the development stack (the dev extra: pytest, gradio, selenium,
# mypy, ...). Each has its own stamp, redone when pyproject.toml changes.
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP  := $(VENV)/.installed-dev
DEMO_EXTRAS := plots
DEMO    ?= runs/demo

.PHONY: install demo test bench lint clean browser

# The app's browser test drives Debian's headless Chromium (CI runs as root).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } || \
	  echo "could not install chromium: the browser test will be skipped"

$(TORCH):
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	touch $(TORCH)

$(DEMO_STAMP): pyproject.toml $(TORCH)
	$(BIN)/pip install -q -e '.[$(DEMO_EXTRAS)]'
	touch $(DEMO_STAMP)

$(DEV_STAMP): pyproject.toml $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/python -m tractable.demo --out $(DEMO)

test: $(DEV_STAMP) browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: $(DEV_STAMP)
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) runs .pytest_cache
