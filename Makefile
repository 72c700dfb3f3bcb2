# Set-up and everyday commands. `make test` and `make demo` work on a fresh machine: they build .venv first.
# One venv per target: PYTHON (interpreter), VENV (where), CONSTRAINTS (the target's pins, constraints/*.txt;
# empty = requirements.txt as pinned). `make test-py312` is the ROS 2 Jazzy / Ubuntu 24.04 target.
PYTHON ?= python3.11
VENV ?= .venv
CONSTRAINTS ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP_C := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

.PHONY: venv test test-py312 venv-py312 car-venv check-car-venv demo bench colcon-test clean

venv: $(STAMP)

$(STAMP): requirements.txt setup.py $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) scripts/requirements_for.py requirements.txt $(if $(CONSTRAINTS),--constraints $(CONSTRAINTS)) \
	  > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements.txt $(PIP_C)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

## Run the whole test suite (CPU only; GPU tests skip themselves).
test: $(STAMP)
	$(PY) -m pytest -q

## The same suite on the car's platform: Python 3.12, Ubuntu 24.04's numpy, the oldest OpenCV allowed (.venv312).
test-py312 venv-py312: PY312_GOAL = $(if $(filter venv-py312,$@),venv,test)
test-py312 venv-py312:
	@py=$$(scripts/find_python.sh 3.12) && \
	  $(MAKE) --no-print-directory $(PY312_GOAL) PYTHON="$$py" VENV=.venv312 CONSTRAINTS=constraints/jazzy-noble.txt

## The car's venv (Ubuntu 24.04 + ROS 2 Jazzy, after `source /opt/ros/jazzy/setup.bash` and rosdep): on top of
## the system Python, with only what apt/rosdep cannot provide (see README, "A ROS 2 workspace").
car-venv:
	scripts/car_venv.sh .venv-car

## That install path rehearsed on a machine without ROS: a stand-in system Python 3.12 under build/car-check.
check-car-venv:
	scripts/check_car_venv.sh build/car-check

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
