# Two commands do all the set-up on a fresh machine:
#   make demo   - the main job: train vqvae2 and sqvae2 on Fashion-MNIST, evaluate, write the report
#   make test   - install what the tests need and run them
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.hqvae-ready

.PHONY: setup data test test-all demo bench clean

$(READY): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,test]'
	touch $(READY)

setup: $(READY)

# Fashion-MNIST from the Debian package when we can (root + apt); otherwise hqvae downloads it with checksums.
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 || \
		echo "note: could not install dataset-fashion-mnist; hqvae will download Fashion-MNIST instead"; \
	fi

demo: setup data
	$(BIN)/hqvae demo --out runs/demo

test: setup data
	$(BIN)/python -m pytest -q -m "not slow"

test-all: setup data
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .pytest_cache
