# The single entry point. `make demo` and `make test` work on a fresh machine: every target
# installs what it needs (idempotently, guarded by stamp files).
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Lambda runs python3.12; the dev venv and `sam build` use the same minor version.
# Resolved to the real interpreter: a pyenv shim named python3.12 may run another version.
PYTHON312 ?= $(shell for p in python3.12 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12; do \
  "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)' 2>/dev/null && break; done)
VENV      := .venv
SAM_VENV  := .venv-sam
STAMPS    := .make
PY        := $(VENV)/bin/python
SAM       := $(SAM_VENV)/bin/sam
CHECKOV_VENV := .venv-checkov
CHECKOV      := $(CHECKOV_VENV)/bin/checkov
# The region `sam validate`, `sam build` and `sam deploy --guided` default to (your own setting wins).
# The offline stack and its tests pick their own (avatar_local.stack.local_aws.REGION, not us-east-1).
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0

.PHONY: help install system-deps test unit lint template-check security-check build deploy demo demo-campaign bench soak clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMPS):
	@mkdir -p $(STAMPS)

# espeak-ng gives the emulator real speech; optional (the emulator falls back to a tone track).
$(STAMPS)/system-deps: | $(STAMPS)
	@if ! command -v espeak-ng >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null) \
	      || echo "note: espeak-ng could not be installed; the emulator will use a tone track"; \
	  else echo "note: espeak-ng missing and not root; the emulator will use a tone track"; fi; \
	fi
	@touch $@

# Debian's chromium opens report.html in the browser test (tests/e2e/test_report_browser.py), which
# fails where it could have been installed (root with apt-get) and skips, saying why, elsewhere.
$(STAMPS)/chromium: | $(STAMPS)
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "note: chromium could not be installed; the report's browser test will fail"; \
	  else echo "note: chromium missing (installed only as root with apt-get); the report's browser test will be skipped"; fi; \
	fi
	@touch $@

system-deps: $(STAMPS)/system-deps $(STAMPS)/chromium

$(STAMPS)/venv: pyproject.toml | $(STAMPS)
	@test -n "$(PYTHON312)" || { echo "python3.12 not found (install it or set PYTHON312=...)"; exit 1; }
	@test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# aws-sam-cli pins its own dependency ranges, so it lives in a venv of its own.
$(STAMPS)/sam: | $(STAMPS)
	@test -x $(SAM_VENV)/bin/python || $(PYTHON312) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q --disable-pip-version-check 'aws-sam-cli>=1.130,<2'
	@touch $@

# checkov is heavy and pins its own dependency ranges, so it lives in a venv of its own.
$(STAMPS)/checkov: | $(STAMPS)
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON312) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q --disable-pip-version-check 'checkov>=3.2,<4'
	@touch $@

install: $(STAMPS)/venv $(STAMPS)/system-deps $(STAMPS)/chromium ## create .venv with everything for tests and the demo

lint: install ## ruff + mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/common local functions tests bench

template-check: install $(STAMPS)/sam ## cfn-lint, sam validate --lint, sam build (offline)
	$(VENV)/bin/cfn-lint --regions us-east-1 eu-west-1 af-south-1 ap-southeast-3 cn-north-1 us-gov-west-1 -- template.yaml
	PATH="$(dir $(PYTHON312)):$$PATH" $(SAM) validate --lint --region $(AWS_DEFAULT_REGION)
	$(MAKE) --no-print-directory build

# checkov exits 1 on a failed check, but 0 when it could not read the template at all ("Parsing
# errors: 1"), so the summary line is checked too. Suppressions live in template.yaml, with reasons.
security-check: $(STAMPS)/checkov ## checkov on template.yaml, offline: fails on any unsuppressed finding
	@out="$$($(CHECKOV) -f template.yaml --framework cloudformation --skip-download --quiet --compact 2>&1)"; rc=$$?; \
	  echo "$$out"; \
	  echo "$$out" | grep -Eq '^Passed checks: [1-9][0-9]*, Failed checks: [0-9]+, Skipped checks: [0-9]+$$' \
	    || { echo "checkov read nothing from template.yaml"; exit 1; }; \
	  exit $$rc

unit: install ## fast tests only
	$(VENV)/bin/pytest -m unit -q

# The slowest tests are listed at the end, to keep the run within its 20 minutes.
test: lint template-check security-check ## everything CI runs
	$(VENV)/bin/pytest -q --durations=25

build: install $(STAMPS)/sam ## sam build without Docker (python3.12 from PATH)
	PATH="$(dir $(PYTHON312)):$$PATH" $(SAM) build --region $(AWS_DEFAULT_REGION)
	@# The runtime provides boto3/botocore; a copy in the layer would shadow it.
	@test ! -e .aws-sam/build/CommonLayer/python/botocore || { echo "botocore leaked into the layer"; exit 1; }
	@du -sh .aws-sam/build/CommonLayer | awk '{print "layer size: " $$1}' 

deploy: build ## sam deploy --guided into your own account
	$(SAM) deploy --guided

demo: install ## run the whole pipeline offline and leave a playable video
	$(VENV)/bin/avatar-pipeline local demo

demo-campaign: install ## run examples/campaign offline (4 rows, 2 photos) and print where report.html is
	$(VENV)/bin/avatar-pipeline local run --inbox examples/campaign --out demo-campaign-output --time-scale 0.02

bench: install ## benchmarks: figures beside a baseline, JSON in bench/results/
	$(VENV)/bin/python -m bench

# Not part of `make test`: 15 to 20 minutes. SEEDS="1 2 3" runs several seeds, one JSON each.
soak: install ## the seeded soak: 300 jobs, faults, crashes, duplicates; bench/results/soak.json (SEEDS="1 2")
	@if [ -z "$(SEEDS)" ]; then $(PY) -m bench soak; else \
	  status=0; for seed in $(SEEDS); do \
	    $(PY) -m bench soak --seed $$seed --output bench/results/soak-$$seed.json || status=1; \
	  done; exit $$status; fi

clean: ## remove build output and venvs
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) $(STAMPS) .aws-sam .mypy_cache .ruff_cache .pytest_cache demo-output demo-campaign-output
