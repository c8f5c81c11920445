# blockdrive — the two commands: `make run` (server on the embedded default) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install run test test-unit lint soak rehearsal rehearsal-quick services-up services-down bench bench-quick docs clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py scripts/bootstrap.sh
	bash scripts/bootstrap.sh "$(PYTHON)" "$(VENV)"
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet -e '.[all]'
	touch $@

run: install
	$(BIN)/blockdrive init
	$(BIN)/blockdrive serve

test: install
	bash scripts/test.sh

# the reliability suite's long variants (crash matrix x25, 500 kills, 10 min load, fuzzing x100,
# bisync model 10 seeds x 40 rounds on each database, rclone over WebDAV on 2,000 files, the job
# command killed at every step with a JVM of its own, ...); prints
# one table of figures and writes var/reliability/soak-latest.json
RELIABILITY = tests/reliability tests/e2e/test_schemathesis.py tests/e2e/test_authz_matrix.py \
              tests/e2e/test_dedup_oracle.py tests/e2e/test_hostile.py tests/e2e/test_bisync_model.py \
              tests/e2e/test_dav_rclone.py tests/unit/jobs/test_kill.py
soak: install
	bash scripts/services.sh up
	BLOCKDRIVE_SOAK=1 $(BIN)/python -m pytest $(RELIABILITY) -p no:cacheprovider -q --timeout 0

# the scale-out rehearsal (docs/scale.md): HAProxy and 3 API servers, HDFS with 3 DataNodes, a MariaDB
# primary and replica, Spark standalone and two schedulers on this machine, nodes killed under a client
# load; figures in bench/results/rehearsal-<profile>.json, exit 1 if a pass condition failed
rehearsal: install
	VENV=$(VENV) bash scripts/rehearsal.sh

rehearsal-quick: install
	VENV=$(VENV) bash scripts/rehearsal.sh --quick

# ruff and mypy, both configured in pyproject.toml (mypy checks the files set there)
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test-unit: install
	$(BIN)/python -m pytest tests/unit -m "not integration"

services-up:
	bash scripts/services.sh up

services-down:
	bash scripts/services.sh down

# blockdrive vs restic and the hardware on the same data (bench/suite.py); installs restic and rclone if missing
bench: install
	VENV=$(VENV) bash scripts/bench.sh

bench-quick: install
	VENV=$(VENV) bash scripts/bench.sh --quick

# the figure tables in docs/ (from the latest bench/results and var/reliability JSON, copied to
# docs/results/ so the repo alone can rebuild them) and the module graphs in docs/architecture.md
docs: install
	$(BIN)/python -m tools.figures --collect
	$(BIN)/python -m tools.architecture

clean:
	rm -rf $(VENV) var build *.egg-info
