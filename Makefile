# Set-up and everyday commands. `make test` and `make demo` work on a fresh machine: they build .venv first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test demo bench colcon-test clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Run the whole test suite (CPU only; GPU tests skip themselves).
test: $(STAMP)
	$(PY) -m pytest -q

## Simulated ZED + Boson -> perception node with the bundled model; overlays and a summary under demo_output/.
demo: $(STAMP)
	$(VENV)/bin/road-seg demo --out demo_output

## Speed figures (not a test).
bench: $(STAMP)
	$(VENV)/bin/road-seg bench

## Build and test as a ROS 2 ament_python package with colcon (in a scratch workspace).
colcon-test: $(STAMP)
	rm -rf build/colcon_ws && mkdir -p build/colcon_ws/src && ln -s $(CURDIR) build/colcon_ws/src/road_seg_ros
	cd build/colcon_ws && ../../$(VENV)/bin/colcon build --packages-select road_seg_ros && \
	  ../../$(VENV)/bin/colcon test --packages-select road_seg_ros --pytest-args -q -m "not ros" && \
	  ../../$(VENV)/bin/colcon test-result --verbose

clean:
	rm -rf build install log demo_output .pytest_cache

## On a CUDA machine, from a plain copy of the tree (installs nothing): the CUDA/TensorRT tests and GPU speed
## figures in one JSON (see README, "GPU check"). Uses the Python already there (GPU_PYTHON), not the venv.
GPU_PYTHON ?= python3
.PHONY: gpu-check
gpu-check:
	$(GPU_PYTHON) tools/gpu_check.py --out gpu_check.json
