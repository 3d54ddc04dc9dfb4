# Two commands do all the set-up on a fresh machine:
#   make demo   - the main job: train vqvae2 and sqvae2 on Fashion-MNIST, evaluate, write the report
#   make test   - install what the tests need and run them
#   make anchors - the benchmark-only learned anchors (CompressAI, built against the pinned torch)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
READY  := $(VENV)/.hqvae-ready

.PHONY: setup data test test-kernels test-all demo bench anchors clean

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

# The golden and model tests again under other CPU kernels (no SIMD in PyTorch's own kernels), so
# that a result that holds on one CPU only cannot pass unseen (docs/golden-tolerances.md).
test-kernels: setup data
	ATEN_CPU_CAPABILITY=default $(BIN)/python -m pytest -q -m "not slow" \
		tests/test_golden.py tests/test_models.py tests/test_pqvae.py tests/test_quantizers.py tests/test_relaxed.py

test-all: setup data
	$(BIN)/python -m pytest -q

# CompressAI 1.2.0 from its source against our torch, without its dependencies: it then imports
# without torchvision (whose registry wheels are CUDA builds that fail against the CPU torch), and
# its C++ range coder (compressai.ans) is built here. Used by benchmarks/anchors.py only.
anchors: setup
	$(BIN)/pip install -q pybind11 scipy wheel
	$(BIN)/pip install -q --no-deps --no-build-isolation compressai==1.2.0
	$(BIN)/python -c "import sys, compressai, compressai.ans; assert 'torchvision' not in sys.modules; print('compressai', compressai.__version__, compressai.available_entropy_coders())"

clean:
	rm -rf $(VENV) .pytest_cache
