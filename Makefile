# Two commands do everything on a fresh machine:
#   make run    set up, then classify the bundled test images with the bundled model
#               (golden model) and write its energy report
#   make test   set up, then run the test suite (slow tests: make test-slow)
#   make sim    simulate the RTL on N test images and compare it with the golden model
#               (SIM=verilator|icarus, N=32, FIRST=0, DATA=npz|folder, MODEL=..., SHARDS=2,
#               RESUME=1: keep the images a stopped run of the same build finished)
PY ?= python3
PIP := $(PY) -m pip install -q --disable-pip-version-check
MODEL ?= models/default.sfm

.PHONY: setup run test test-slow bench sim sim-setup sim-report sim-random board host-sim icarus \
	reports

setup:
	$(PIP) torch==2.13.0
	$(PIP) -e ".[train,test,hw]"

run: setup
	$(PY) -m model.infer --model $(MODEL)
	$(PY) -m model.energy --model $(MODEL)

test: setup icarus
	$(PY) -m pytest -q -p no:cacheprovider

test-slow: setup
	$(PY) -m pytest -q -p no:cacheprovider -m slow

bench: setup
	$(PY) -m model.bench --config spikingformer-2-64

# -- simulation (sim/): RTL vs golden model, bit for bit ---------------------------------------
SIM ?= verilator
N ?= 32
FIRST ?= 0
SHARDS ?= 2
DATA ?=
SIM_REPORT ?= docs/sim/$(basename $(notdir $(MODEL)))

sim-setup: setup
	@if [ "$(SIM)" = icarus ]; then $(MAKE) --no-print-directory icarus; fi

# Icarus Verilog from Debian (the tests' second simulator; they skip without it)
icarus:
	@command -v iverilog >/dev/null || apt-get install -y -q iverilog >/dev/null 2>&1 \
		|| { apt-get update -q >/dev/null && apt-get install -y -q iverilog >/dev/null; } \
		|| echo "warning: Icarus Verilog not installed; its tests will be skipped"

sim: sim-setup
	$(PY) -m sim.run --model $(MODEL) --sim $(SIM) -n $(N) --first $(FIRST) \
		--shards $(SHARDS) $(if $(DATA),--data $(DATA)) $(if $(RESUME),--resume) \
		--report $(SIM_REPORT)

sim-report:
	$(PY) -m sim.report --run build/$(basename $(notdir $(MODEL)))/run_$(SIM) --out $(SIM_REPORT)

sim-random: sim-setup
	$(PY) -m sim.random_models

# -- board builds (bitstreams/<board>/) and the host link, docs/board.md ----------------------
#   make board                      Arty A7-35T: Vivado build tree, yosys utilization, fit check
#   make board BOARD=ulx3s_85f      ULX3S-85F: open flow to a bitstream, Fmax
#   make host-sim                   hw.host over the simulated UART (cocotb + Verilator)
BOARD ?= arty_a7_35

board: setup
	$(PIP) -e ".[hw,board]"
	$(PY) -m hw.build --board $(BOARD) --model $(MODEL)

host-sim: sim-setup
	$(PY) -m sim.host.run --tiny -n 4

# -- after a new default model is released (models/README.md): every report made from it --------
#   make reports    energy (docs/energy/), 100 images on the RTL (docs/sim/), both board builds
#                   (bitstreams/); tests/docs checks that each names the bundled file's sha256
reports: setup
	$(PIP) -e ".[hw,board]"
	$(PY) -m model.energy --model $(MODEL)
	$(PY) -m sim.run --model $(MODEL) -n 100 --shards $(SHARDS) --report $(SIM_REPORT)
	$(PY) -m hw.build --board arty_a7_35 --model $(MODEL)
	$(PY) -m hw.build --board ulx3s_85f --model $(MODEL)
	$(PY) -m model.budget --model $(MODEL)
