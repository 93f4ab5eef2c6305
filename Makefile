# Two commands do all set-up on a fresh machine with Python 3.11:
#   make quick   - the whole reproduction at toy scale on a CPU (results/quick/)
#   make test    - the test suite (what CI runs, via .ci/run)
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU wheel; a looser pin would pull several GB of CUDA packages. On a GPU cluster install
# the torch build of your CUDA version instead (pyproject.toml accepts torch>=2.4).
TORCH  ?= torch==2.13.0

.PHONY: quick test install dry-run paper clean

$(BIN)/snakemake: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/snakemake

quick: install
	$(BIN)/snakemake --profile profiles/local --configfile config/quick.yaml

test: install
	$(BIN)/pytest -q

dry-run: install
	$(BIN)/snakemake -n --quiet rules

clean:
	rm -rf results/quick results/tiny
