# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_FLAGS := --disable-pip-version-check -q
# pip byte-compiles the ~21,000 installed modules one at a time; compileall does it on every core instead
# (25 s on 2; a fresh-clone install went from 4 min 7 s to 1 min 51 s on a 2-core AMD EPYC). The bytecode must be written at install: runs may not write it (with
# PYTHONDONTWRITEBYTECODE set, as on our machines, every process would compile its imports anew). A few
# files shipped for newer Pythons do not compile, which pip ignores too, hence `|| true`.

.PHONY: install demo demo-hard-data demo-hard-photos-data train test test-fast lint clean-demo bench bench-data

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) --no-compile -c constraints.txt -e '.[dev]'
	$(BIN)/python -m compileall -qq -j 0 $(VENV)/lib || true
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m fashion_clip.demo --out data/demo
	$(BIN)/python -m fashion_clip.train experiment=demo $(ARGS)

# the harder catalogue behind `data=demo_hard` / `experiment=demo_hard` (skips when already complete)
demo-hard-data: $(STAMP)
	$(BIN)/python -m fashion_clip.demo --out data/demo_hard --hard

# the same catalogue as 256-px photos, behind `data=demo_hard_photos` / `experiment=pipeline_study`
demo-hard-photos-data: $(STAMP)
	$(BIN)/python -m fashion_clip.demo --out data/demo_hard_photos --hard --image-size 256

train: $(STAMP)
	$(BIN)/python -m fashion_clip.train $(ARGS)

# Tests run on every core, 4 at most (pytest-xdist; `xdist_group` markers keep some on one worker, see
# tests/conftest.py): `make test PYTEST_WORKERS=0` runs them in one process, PYTEST_WORKERS=8 on 8.
# PYTEST_ARGS go last (`PYTEST_ARGS="-x tests/test_train.py"`); with `-p no:xdist` there, no -n is given.
PYTEST_WORKERS ?= auto
XDIST_ARGS = $(if $(findstring no:xdist,$(PYTEST_ARGS)),,-n $(PYTEST_WORKERS) --maxprocesses=4 --dist loadgroup)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST_ARGS) --durations=15 $(PYTEST_ARGS)

# the edit-run loop: everything but the tests marked slow (training runs, subprocesses, DDP)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(XDIST_ARGS) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports --no-cache

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

# the data pipelines alone, samples/s per CPU core (one data worker), ours against open_clip_train's loader,
# written to outputs/bench-data/<date>/results.{json,md}: 18-30 minutes on 2 idle cores (ARGS="--rounds 3"
# for a rougher look)
bench-data: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python benchmarks/data_pipeline.py --openclip-python $(BENCH_VENV)/bin/python $(ARGS)

clean-demo:
	rm -rf data/demo data/demo_hard data/demo_hard_photos
