# One command each, on a fresh machine with Python 3.11 and make: `make demo`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test flickr8k flickr8k-finetune flickr8k-table clean

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,beam,web]'
	touch $(STAMP)

# Generate the demo data, train Stage I and II, evaluate, print the recall table.
demo: $(STAMP)
	$(PY) -m keras_instance.cli.demo_data --out data/demo
	$(PY) -m keras_instance.cli.train --flagfile=configs/demo.flags --stage=1
	$(PY) -m keras_instance.cli.train --flagfile=configs/demo.flags --stage=2
	$(PY) -m keras_instance.cli.evaluate --workdir=runs/demo --split=test
	$(PY) -m keras_instance.cli.report --workdir=runs/demo --split=test

# Lint first (ruff.toml: 100 columns, pyflakes, import order), then the suite.
# Two pytest workers, one test file each at a time: much of a test's time is single-threaded
# (imports, tracing, XLA compiles, subprocess start-up), so two keep both cores busy. Files go
# heaviest first (tests/file_durations.json, see tests/conftest.py), so no long file runs alone
# at the end; `pytest --record-file-durations` refreshes that file.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder tests

# Real data: ../shared/data/flickr8k and the MobileNetV2 weights in ../shared/weights.
# Stage I takes its own flagfile (it includes flickr8k.flags and changes batch and word LR).
flickr8k: $(STAMP)
	@start=$$(date +%s); \
	$(PY) -m keras_instance.cli.train --flagfile=configs/flickr8k_stage1.flags --stage=1 && \
	echo $$(( $$(date +%s) - start )) > runs/flickr8k/wall_seconds_stage1 && \
	$(PY) -m keras_instance.cli.train --flagfile=configs/flickr8k.flags --stage=2 && \
	echo $$(( $$(date +%s) - start )) > runs/flickr8k/wall_seconds
	$(PY) -m keras_instance.cli.evaluate --workdir=runs/flickr8k --split=test --stage=1
	$(PY) -m keras_instance.cli.evaluate --workdir=runs/flickr8k --split=test

# Stage II fine-tuning MobileNetV2's last conv from the prefix cache (issue 13), same data.
flickr8k-finetune: $(STAMP)
	@mkdir -p runs/flickr8k_finetune; start=$$(date +%s); \
	$(PY) -m keras_instance.cli.train --flagfile=configs/flickr8k_finetune_stage1.flags --stage=1 && \
	echo $$(( $$(date +%s) - start )) > runs/flickr8k_finetune/wall_seconds_stage1 && \
	$(PY) -m keras_instance.cli.train --flagfile=configs/flickr8k_finetune.flags --stage=2 && \
	echo $$(( $$(date +%s) - start )) > runs/flickr8k_finetune/wall_seconds
	$(PY) -m keras_instance.cli.evaluate --workdir=runs/flickr8k_finetune --split=test --stage=1
	$(PY) -m keras_instance.cli.evaluate --workdir=runs/flickr8k_finetune --split=test

# The loss/label ablation on Flickr8k (after `make flickr8k`, whose cache it reuses): Stage I
# with the instance loss (from `make flickr8k`), with the ranking loss only, with k-means
# pseudo-labels (K = 500, 2000), and the full Stage I + II; one markdown table at the end.
ABLATION := ranking:--loss_weights=1,0,0 kmeans500:--labels=kmeans+--num_clusters=500 \
	kmeans2000:--labels=kmeans+--num_clusters=2000
flickr8k-table: $(STAMP)
	@for row in $(ABLATION); do \
	  name=$${row%%:*}; extra=$$(echo $${row#*:} | tr '+' ' '); w=runs/flickr8k_$$name; \
	  start=$$(date +%s); \
	  $(PY) -m keras_instance.cli.train --flagfile=configs/flickr8k_stage1.flags --stage=1 \
	    --workdir=$$w $$extra || exit 1; \
	  echo $$(( $$(date +%s) - start )) > $$w/wall_seconds; \
	  $(PY) -m keras_instance.cli.evaluate --workdir=$$w --split=test --stage=1 || exit 1; \
	done
	$(PY) -m keras_instance.cli.results_table --split=test \
	  --row="Stage I, instance loss=runs/flickr8k:1" \
	  --row="Stage I, ranking loss only=runs/flickr8k_ranking:1" \
	  --row="Stage I, k-means labels K=500=runs/flickr8k_kmeans500:1" \
	  --row="Stage I, k-means labels K=2000=runs/flickr8k_kmeans2000:1" \
	  --row="Stage I + II, instance + ranking=runs/flickr8k"

clean:
	rm -rf $(VENV) runs/demo data/demo
