# One command each, on a fresh machine with Python 3.11 and make: `make demo`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test flickr8k clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Generate the demo data, train Stage I and II, evaluate, print the recall table.
demo: $(STAMP)
	$(PY) -m keras_instance.demo_data --out data/demo
	$(PY) -m keras_instance.train --flagfile=configs/demo.flags --stage=1
	$(PY) -m keras_instance.train --flagfile=configs/demo.flags --stage=2
	$(PY) -m keras_instance.evaluate --flagfile=configs/demo.flags --split=test
	$(PY) -m keras_instance.report --flagfile=configs/demo.flags --split=test

test: $(STAMP)
	$(PY) -m pytest -q tests

# Real data: ../shared/data/flickr8k and the MobileNetV2 weights in ../shared/weights.
flickr8k: $(STAMP)
	$(PY) -m keras_instance.train --flagfile=configs/flickr8k.flags --stage=1
	$(PY) -m keras_instance.train --flagfile=configs/flickr8k.flags --stage=2
	$(PY) -m keras_instance.evaluate --flagfile=configs/flickr8k.flags --split=test

clean:
	rm -rf $(VENV) runs/demo data/demo
