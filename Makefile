# flow-receipts — entry points. Every target creates the virtual environment it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCAL_DIR ?= .local

DEMO_DIR := .local/demo

.PHONY: venv test lint format bench chaos mns local-up local-down invoke migrate demo docs build deploy lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The suite waits on emulators and databases more than it computes: 3 workers on 2 cores (TEST_WORKERS=0: one process).
TEST_WORKERS ?= 3
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# make bench [ARGS='--only drain_throughput,e2e_latency' | ARGS=--quick | ARGS=--table]: every benchmark, one table
bench: $(STAMP)
	$(PY) -m bench $(ARGS)

# The whole pipeline under every fault the local stack makes, then the invariants (README "Chaos"):
#   make chaos CHAOS_ARGS='--receipts 20000 --seed 7 --ledger postgresql'
CHAOS_ARGS ?= --receipts 100000
chaos: $(STAMP)
	$(PY) -m local.chaos $(CHAOS_ARGS)

# Run the MNS emulator in the foreground: make mns ARGS='--port 9100 --data-dir .local/mns'
mns: $(STAMP)
	$(PY) -m local mns $(ARGS)

# The whole local Alibaba side in the background; variables in $(LOCAL_DIR)/stack.env.
local-up: $(STAMP)
	$(PY) -m local up --state-dir $(LOCAL_DIR)

local-down: $(STAMP)
	$(PY) -m local down --state-dir $(LOCAL_DIR)

# Run one handler locally with an FC-shaped context, against the local stack when it is up and the
# environment does not already point elsewhere (ALICOM_MNS_ENDPOINT set):
#   make invoke FN=drainer EVENT=events/timer.json
invoke: $(STAMP)
	@test -n "$(FN)" || { echo "usage: make invoke FN=<function> EVENT=<event file>" >&2; exit 2; }
	@set -a; if [ -z "$$ALICOM_MNS_ENDPOINT" ] && [ -f "$(abspath $(LOCAL_DIR))/stack.env" ]; then \
	  . "$(abspath $(LOCAL_DIR))/stack.env"; fi; set +a; \
	$(PY) -m local invoke --function $(FN) $(if $(EVENT),--event $(EVENT)) $(INVOKE_ARGS)

# One code package for the three functions (build/code: handlers, shared/, python3.10 wheels with the driver of
# DB=mysql|postgresql only, from requirements/fc$(FC)-$(DB).lock with --require-hashes, trimmed) and
# build/template.yml, ram-policy.json, trust-policy.json, manifest.json. FC=2 (default): FC 2.0, template.yml and
# aliyun-fc2; FC=3: FC 3.0, template.fc3.yml rendered into build/template.yml, the fc3 extra and no aliyun-fc2.
DB ?= mysql
FC ?= 2
build: $(STAMP)
	$(PY) -m local.build --db $(DB) --fc $(FC) $(BUILD_ARGS)

# s deploy -t build/template.yml -y, after checking the build (for the same FC), the `s` CLI, its credentials and the
# variables the template needs (README "Deploying"); DEPLOY_ARGS=--check stops before running s.
deploy: $(STAMP)
	$(PY) -m local.deploy --fc $(FC) $(DEPLOY_ARGS)

# requirements/fc{2,3}-{mysql,postgresql}.lock: the runtime dependencies for FC's python3.10, pinned with sha256 at
# the versions the tests run (pip --dry-run --report against the package index). Rerun after changing pyproject's
# dependencies; LOCK_ARGS=--check only checks that the locks agree with pyproject.toml (no network).
lock: $(STAMP)
	$(PY) -m local.lock $(LOCK_ARGS)

docs: $(STAMP)
	$(PY) -m local.docs

# Create or upgrade the ledger schema at LEDGER_URL (default: a SQLite file).
migrate: $(STAMP)
	$(VENV)/bin/flow-receipts migrate

# The main job end to end on a fresh local stack (its own state dir), then a reconciliation summary.
demo: $(STAMP)
	@$(PY) -m local down --state-dir $(DEMO_DIR) >/dev/null
	@rm -rf $(DEMO_DIR)
	@$(PY) -m local up --state-dir $(DEMO_DIR)
	@$(PY) -m local.demo --state-dir $(DEMO_DIR) $(DEMO_ARGS); status=$$?; \
	$(PY) -m local down --state-dir $(DEMO_DIR) >/dev/null; exit $$status

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
