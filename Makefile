# RetinaFace (MXNet) -- set-up, tests, demo, benchmarks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements.stamp
# the project itself, installed editable: `import retinaface` from any folder, console scripts
INSTALL_STAMP := $(VENV)/.editable.stamp
KERNELS := cython_ext/anchors.pyx cython_ext/bbox.pyx cython_ext/cpu_nms.pyx
KERNEL_STAMP := cython_ext/.built.stamp
# optional: a separate environment with the insightface package, for the test that loads our
# export in it (tests/deploy/test_insightface_package.py skips without it)
INSIGHTFACE_VENV := .venv-insightface
INSIGHTFACE_STAMP := $(INSIGHTFACE_VENV)/.requirements.stamp
PYTEST_ARGS ?= -q
PIP := $(PY) -m pip install --disable-pip-version-check -q

.PHONY: setup setup-insightface test clean

setup: $(STAMP) $(KERNEL_STAMP) $(INSTALL_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# the runtime plus the optional deployment extras (onnx, onnxruntime), so the ONNX tests run;
# -c keeps numpy at the version mxnet 1.9.1 needs
$(STAMP): requirements.txt requirements-deploy.txt | $(VENV)/bin/python
	$(PIP) -r requirements.txt
	$(PIP) -r requirements-deploy.txt -c requirements.txt
	touch $@

$(KERNEL_STAMP): $(KERNELS) setup.py $(STAMP)
	$(PY) setup.py -q build_ext --inplace
	touch $@

# --no-deps: requirements.txt pinned everything already (the build itself gets setuptools,
# wheel, Cython and numpy in pip's isolated build environment, as pyproject.toml asks)
$(INSTALL_STAMP): pyproject.toml setup.py $(STAMP)
	$(PIP) --no-deps -e .
	touch $@

$(INSIGHTFACE_VENV)/bin/python:
	$(PYTHON) -m venv $(INSIGHTFACE_VENV)

# every package pinned in the file, no resolution (--no-deps): insightface's metadata would pull
# opencv-python (needs libGL) next to the pinned headless OpenCV
$(INSIGHTFACE_STAMP): requirements-insightface.txt | $(INSIGHTFACE_VENV)/bin/python
	$(INSIGHTFACE_VENV)/bin/python -m pip install --disable-pip-version-check -q --no-deps \
		-r requirements-insightface.txt
	touch $@

setup-insightface: $(INSIGHTFACE_STAMP)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf build cython_ext/*.so cython_ext/*.c $(KERNEL_STAMP)

.PHONY: bench
bench: setup
	$(PY) -m bench.run_all

# train mnet from scratch on a generated sample set, test, evaluate, draw: about 20 minutes on
# 2 CPU cores (tools/demo.py plans the run from the measured speed)
.PHONY: demo
demo: setup
	$(PY) tools/demo.py
