# ckdsr: `make test` runs the test suite, `make demo` the end-to-end demo (both create .venv when missing).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: test test-slow demo venv clean gpu-check

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# Two pytest workers with one thread each: on a 2-core machine this beats one process with two
# OpenMP threads, whose barriers stall whenever another process takes a core.
TEST_WORKERS ?= 2

test: $(VENV)/.installed
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -n $(TEST_WORKERS)

test-slow: $(VENV)/.installed
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -q -n $(TEST_WORKERS) -m slow

demo: $(VENV)/.installed
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) tools/demo.py

# The CUDA path in one run (about 5 minutes on one GPU; NCCL step too when two GPUs are visible):
# every method at paper shapes in fp32 and bf16 + channels_last -> benchmarks/results/gpu_check.{json,md}
gpu-check: $(VENV)/.installed
	$(PY) benchmarks/gpu_check.py --device cuda

clean:
	rm -rf $(VENV) *.egg-info
