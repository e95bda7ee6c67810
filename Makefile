# Two commands do everything on a fresh machine:
#   make run    set up, then classify the bundled test images with the bundled model
#               (golden model) and write its energy report
#   make test   set up, then run the test suite (slow tests: make test-slow)
PY ?= python3
PIP := $(PY) -m pip install -q --disable-pip-version-check
MODEL ?= models/default.sfm

.PHONY: setup run test test-slow bench

setup:
	$(PIP) torch==2.13.0
	$(PIP) -e ".[train,test,hw]"

run: setup
	$(PY) -m model.infer --model $(MODEL)
	$(PY) -m model.energy --model $(MODEL)

test: setup
	$(PY) -m pytest -q -p no:cacheprovider

test-slow: setup
	$(PY) -m pytest -q -p no:cacheprovider -m slow

bench: setup
	$(PY) -m model.bench --config spikingformer-2-64
