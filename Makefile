# Newcomers need two commands: `make demo` and `make test`. Both set up on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYVER := 3.11
SETUP_STAMP := $(VENV)/.setup-done
MSG_STAMP := build/colcon/.msgs-done
PTH := $(VENV)/lib/python$(PYVER)/site-packages/jaeger_ros_messages.pth
DEMO_DIR ?= data/demo
DEMO_N ?= 20
DEMO_SECONDS ?= 30

.PHONY: setup demo test messages clean bench record

setup: $(SETUP_STAMP) $(MSG_STAMP)

$(SETUP_STAMP): requirements.txt setup.py
	@command -v espeak-ng >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null; }
	test -x $(PY) || python$(PYVER) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e . --config-settings editable_mode=compat
	touch $@

# The ROS wheels' CMake exports point at their build machine's Python; link those paths here.
$(MSG_STAMP): $(SETUP_STAMP) $(wildcard msg/*.msg) CMakeLists.txt package.xml
	inc=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	np=$$($(PY) -c 'import numpy, os; print(os.path.dirname(numpy.__file__))'); \
	mkdir -p /opt/python/cp311-cp311/include /opt/python/cp311-cp311/lib/python3.11/site-packages; \
	ln -sfn "$$inc" /opt/python/cp311-cp311/include/python3.11; \
	ln -sfn "$$np" /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy
	# CMake refuses include paths inside the source dir (the venv is), so build a copy.
	rm -rf build/colcon && mkdir -p build/colcon/src/jaeger_ros
	cp -r msg package.xml CMakeLists.txt build/colcon/src/jaeger_ros/
	source $(VENV)/bin/activate && prefix=$$(realpath $(VENV)) && \
	AMENT_PREFIX_PATH=$$prefix CMAKE_PREFIX_PATH=$$prefix \
	colcon --log-base build/colcon/log build --base-paths build/colcon/src \
		--build-base build/colcon/build --install-base build/colcon/install --merge-install \
		--cmake-args -DPython3_EXECUTABLE=$$prefix/bin/python -DJAEGER_MESSAGES_ONLY=ON -DBUILD_TESTING=OFF \
		> build/colcon.log 2>&1 || { tail -40 build/colcon.log; exit 1; }
	# Generated libraries go where the ROS wheels' loader looks (venv lib); Python code via .pth.
	ln -sf $$(realpath build/colcon/install/lib)/libjaeger_ros__*.so $(VENV)/lib/
	realpath build/colcon/install/lib/python$(PYVER)/site-packages > $(PTH)
	touch $@

messages: $(MSG_STAMP)

# The main job: a small simulated test split scored by the classical baseline (Table-2
# columns), then the live ROS 2 demo (sim_bridge + jaeger_node as separate processes).
demo: setup
	$(VENV)/bin/jaeger dataset generate --out $(DEMO_DIR) --split test --num $(DEMO_N) --seed 0 --tasks A,B,C,D,E --workers 2
	$(VENV)/bin/jaeger eval --method classical --data $(DEMO_DIR) --split test --out reports/demo
	$(PY) -m jaeger_ros.ros.live_demo --duration $(DEMO_SECONDS) --out reports/live

# A rosbag2 (mcap) of the simulated live world; turn it into a split with
# `jaeger dataset from-bag $(RECORD_OUT) --out DIR --split train`. Never overwrites a bag.
RECORD_OUT ?= data/bags/sim
RECORD_SECONDS ?= 60
RECORD_ARGS ?= --scenario single --seed 0
record: setup
	$(VENV)/bin/jaeger record --duration $(RECORD_SECONDS) --out $(RECORD_OUT) $(RECORD_ARGS)

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/bench_generate.py

clean:
	rm -rf build $(VENV) reports data/demo
