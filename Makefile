# Every target creates .venv if it is missing. torch==2.13.0 is installed first and
# explicitly: the CPU wheel is on local disk, and an unpinned install would pull a
# multi-GB CUDA build. Never install torchvision (it breaks beside this torch).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO    ?= runs/demo

.PHONY: install demo test bench lint clean browser

# The app's browser test drives Debian's headless Chromium (CI runs as root).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } || \
	  echo "could not install chromium: the browser test will be skipped"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tractable.demo --out $(DEMO)

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) runs .pytest_cache
