# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_FLAGS := --disable-pip-version-check -q

.PHONY: install demo demo-hard-data train test test-fast lint clean-demo bench

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m fashion_clip.demo --out data/demo
	$(BIN)/python -m fashion_clip.train experiment=demo $(ARGS)

# the harder catalogue behind `data=demo_hard` / `experiment=demo_hard` (skips when already complete)
demo-hard-data: $(STAMP)
	$(BIN)/python -m fashion_clip.demo --out data/demo_hard --hard

train: $(STAMP)
	$(BIN)/python -m fashion_clip.train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# the edit-run loop: everything but the tests marked slow (training runs, subprocesses, DDP)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests

# open_clip_train (the reference trainer) runs from its own virtualenv: it needs webdataset<=0.2.86.
# Every other package is pinned to the version in .venv, so both trainers run the same torch and open_clip.
BENCH_VENV := .venv-openclip
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): $(STAMP) benchmarks/openclip_train_requirements.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BIN)/pip freeze --exclude-editable | grep -iv '^webdataset==' > $(BENCH_VENV)/constraints.txt
	$(BENCH_VENV)/bin/pip install $(PIP_FLAGS) -c $(BENCH_VENV)/constraints.txt \
		-r benchmarks/openclip_train_requirements.txt
	touch $(BENCH_STAMP)

bench: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python benchmarks/bench.py --openclip-python $(BENCH_VENV)/bin/python $(ARGS)

clean-demo:
	rm -rf data/demo data/demo_hard
