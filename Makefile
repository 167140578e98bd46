# Newcomers need two commands: `make demo` and `make test`. Both set up on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYVER := 3.11
SETUP_STAMP := $(VENV)/.setup-done
# Speech engines and voices of the simulator (train/val/test voices differ), sox for augmentation;
# the mesh world's furniture models, Mesa EGL/OSMesa for pyrender on the CPU, a compiler for rlr
APT_PACKAGES := espeak-ng flite sox festival festvox-kallpc16k festvox-us-slt-hts \
	sweethome3d-furniture libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 libosmesa6 g++ python3.11-dev
# SoundSpaces 2.0's acoustic engine (CC-BY-NC-4.0, optional: built from source, ~30 s; without it
# the mesh world falls back to pyroomacoustics)
RLR := rlr-audio-propagation==0.0.1
WS := build/ws
PTH := $(VENV)/lib/python$(PYVER)/site-packages/jaeger_ros_workspace.pth
# Every command below runs in the environment a ROS user has after sourcing the workspace.
RUN := source $(VENV)/bin/activate && source $(WS)/install/setup.bash &&
DEMO_DIR ?= data/demo
DEMO_N ?= 20
DEMO_SECONDS ?= 30
# furnished mesh rooms with rlr sound; DEMO_WORLD=procedural for the dependency-free box world
DEMO_WORLD ?= mesh

.PHONY: setup workspace demo test clean bench record tiny

setup: $(SETUP_STAMP) workspace

$(SETUP_STAMP): requirements.txt requirements-deepspeed.txt requirements-perception.txt requirements-mesh.txt Makefile
	@dpkg -s $(APT_PACKAGES) >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; }
	test -x $(PY) || python$(PYVER) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-deepspeed.txt
	$(PY) -m pip install -q --no-deps -r requirements-perception.txt
	$(PY) -m pip install -q --no-deps -r requirements-mesh.txt
	$(PY) -m pip install -q --no-deps $(RLR) || echo "$(RLR) did not build: the mesh world will use pyroomacoustics"
	touch $@

# The full package built by colcon in a workspace (build/ws/src/jaeger_ros -> build/ws/install),
# exactly as in a user's ROS workspace; rebuilt incrementally on every call (~20 s).
# For `.venv/bin/python` without sourcing: a .pth to the install and its generated libraries
# where the ROS wheels' loader looks.
workspace: $(SETUP_STAMP)
	mkdir -p build
	tools/workspace.sh $(WS) $(PY) > build/workspace.log 2>&1 || { tail -40 build/workspace.log; exit 1; }
	realpath $(WS)/install/lib/python$(PYVER)/site-packages > $(PTH)
	ln -sf $$(realpath $(WS)/install/lib)/lib*__rosidl_*.so $(VENV)/lib/
	@echo "workspace built: $(WS)/install (log: build/workspace.log)"

# The main job: a small simulated test split scored by the classical baseline (Table-2
# columns), then the live ROS 2 demo (sim_bridge + jaeger_node as separate processes).
demo: setup
	$(RUN) jaeger dataset generate --out $(DEMO_DIR) --split test --num $(DEMO_N) --seed 0 --tasks A,B,C,D,E --workers 2 --overwrite --world $(DEMO_WORLD)
	$(RUN) jaeger eval --method classical --data $(DEMO_DIR) --split test --out reports/demo
	$(RUN) $(WS)/install/lib/jaeger_ros/live_demo --duration $(DEMO_SECONDS) --out reports/live --world $(DEMO_WORLD) --talkers mixed --candidates detectors

# The tiny JAEGER from nothing on this CPU: realistic training data (1500 per scene family,
# skipped when present), the staged recipe (config/train_tiny_recipe.yaml, ~60 min), then the
# new checkpoint and the sound-only classical baseline side by side on the fixed test split.
TINY_DATA ?= data/r13
TINY_RUN ?= runs/tiny_recipe
tiny: setup
	test -f $(TINY_DATA)/train/manifests/E.json || { $(RUN) jaeger dataset generate --out $(TINY_DATA) --split train --num 1500 --seed 1 --tasks A,B,C,D,E --workers 2 --conditions realistic --world procedural; }
	test -f $(TINY_DATA)/val/manifests/E.json || { $(RUN) jaeger dataset generate --out $(TINY_DATA) --split val --num 60 --seed 3 --tasks A,B,C,D,E --workers 2 --conditions realistic --world procedural; }
	test -f data/test200/test/manifests/E.json || { $(RUN) jaeger dataset generate --out data/test200 --split test --num 200 --seed 2026 --tasks A,B,C,D,E --workers 2 --conditions realistic --world procedural; }
	$(RUN) jaeger train --recipe config/train_tiny_recipe.yaml --data $(TINY_DATA) --out $(TINY_RUN)
	$(RUN) jaeger eval --checkpoint $(TINY_RUN)/final --compare classical-audio --data data/test200 --split test --out reports/tiny_recipe
	$(RUN) jaeger eval --checkpoint $(TINY_RUN)/final --data $(TINY_DATA) --split val --tasks A,B,D,E --out reports/tiny_recipe_val
	$(RUN) jaeger calibrate --checkpoint $(TINY_RUN)/final --val reports/tiny_recipe_val/predictions.jsonl --test reports/tiny_recipe/predictions.jsonl --plot docs/tiny_calibration.png

# A rosbag2 (mcap) of the simulated live world; turn it into a split with
# `jaeger dataset from-bag $(RECORD_OUT) --out DIR --split train`. Never overwrites a bag.
RECORD_OUT ?= data/bags/sim
RECORD_SECONDS ?= 60
RECORD_ARGS ?= --scenario single --seed 0
record: setup
	$(RUN) jaeger record --duration $(RECORD_SECONDS) --out $(RECORD_OUT) $(RECORD_ARGS)

# The installed package is what is tested: pytest's script (not `python -m`) keeps the source
# tree off sys.path, so `import jaeger_ros` is the workspace install.
test: setup
	$(RUN) pytest

bench: setup
	$(RUN) python benchmarks/bench_generate.py

clean:
	rm -rf build $(VENV) reports data/demo
