# Two commands on a fresh machine (only Python 3.11 + pip needed):
#   make run   - set up the environment and run the whole platform on the embedded stack with demo data
#   make test  - set up the environment and run the test suite
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION ?= 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
RUN := $(UV) run --frozen --no-sync

.PHONY: fuzz-headers fuzz fuzz-api env run test lint typecheck bench-backbone bench-segmenter bench-ingest bench-dispatch bench-console bench-portal bench-scoring bench-intents intents-model chaos-dispatch chaos-sms-outage chaos bench-loop chaos-loop soak clean schemas config-docs security-docs topology image sbom

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) uv.lock pyproject.toml $(wildcard */pyproject.toml services/*/pyproject.toml)
	$(UV) sync --frozen --all-packages --python $(PYTHON)
	touch $@

env: $(VENV)/.synced

run: env
	@# exec the entry point directly: `uv run` would forward Ctrl-C a second time
	exec $(VENV)/bin/arrears up

# The suite mostly waits on brokers, databases and processes: three workers (pytest-xdist, one module per
# worker at a time, each with its own embedded broker and PostgreSQL) halve its time on 2 cores.
TEST_WORKERS ?= 3
test: env
	$(RUN) pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: env
	$(RUN) ruff check .
	$(RUN) ruff format --check .

typecheck: env
	$(RUN) mypy shared/src services/*/src cli/src emulators/src

bench-backbone: env
	$(RUN) python bench/backbone.py

bench-segmenter: env
	$(RUN) python bench/segmenter.py

bench-ingest: env
	$(RUN) python bench/ingest.py

bench-dispatch: env
	$(RUN) python bench/dispatch.py

bench-console: env
	$(RUN) python bench/console.py

bench-portal: env
	$(RUN) python bench/portal.py $(PORTAL_ARGS)

bench-scoring: env
	$(RUN) python bench/scoring.py $(SCORING_ARGS)

bench-intents: env
	$(RUN) python bench/intents.py

intents-model: env
	$(RUN) arrears intents train

chaos-dispatch: env
	$(RUN) python bench/chaos_dispatch.py

# QUO down for 10 minutes mid-run: SMS steps go by email, once (docs/dispatch.md, "SMS down"). SMS_OUTAGE_ARGS
# passes options through, e.g. `make chaos-sms-outage SMS_OUTAGE_ARGS="--outage-s 60 --accounts 600"`.
chaos-sms-outage: env
	$(RUN) python bench/chaos_sms_outage.py $(SMS_OUTAGE_ARGS)

# The whole platform, every service its own process (docs/performance.md, "The whole loop"). LOOP_ARGS passes
# options through, e.g. `make bench-loop LOOP_ARGS="--accounts 20000"`.
bench-loop: env
	$(RUN) python bench/loop.py $(LOOP_ARGS)

chaos-loop: env
	$(RUN) python bench/chaos_loop.py $(LOOP_ARGS)

SOAK_MINUTES ?= 30
soak: env
	$(RUN) python bench/soak.py --minutes $(SOAK_MINUTES) $(LOOP_ARGS)

# coverage-guided fuzzing (atheris) of every webhook signature-header parser; FUZZ_SECONDS bounds the run
FUZZ_SECONDS ?= 60
fuzz-headers: env
	$(RUN) python fuzz/headers.py -max_total_time=$(FUZZ_SECONDS)

# coverage-guided fuzzing (atheris): webhook signature headers, sheet rows, CloudEvents decoder; FUZZ_SECONDS each
fuzz: env
	mkdir -p .fuzz
	$(RUN) python fuzz/headers.py -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=.fuzz/
	$(RUN) python fuzz/sheet_rows.py -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=.fuzz/
	$(RUN) python fuzz/cloudevents.py -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=.fuzz/

# property-based fuzzing (schemathesis) of every service's API as every role, FUZZ_EXAMPLES per operation, a new seed each run
FUZZ_EXAMPLES ?= 100
fuzz-api: env
	ARREARS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) ARREARS_FUZZ_SEED=random $(RUN) pytest -q tests/fuzz/test_api_fuzz.py

topology: env
	$(RUN) python deploy/gen_topics.py
	$(RUN) python deploy/gen_workloads.py
	$(RUN) arrears schemas export docs/schemas

schemas: env
	$(RUN) arrears schemas export docs/schemas

config-docs: env
	$(RUN) arrears config --format markdown --output docs/configuration.md

security-docs: env
	$(RUN) arrears security matrix --write docs/security.md

# The one container image for every service (docs/image.md): buildah, chroot isolation, vfs storage under
# .arrears/image; then every service's command is started from it until it answers /healthz.
image: $(UV) sbom
	UV_VERSION=$(UV_VERSION) deploy/image/build.sh

# CycloneDX SBOM of the image's packages, from uv.lock
sbom: $(UV)
	UV=$(UV) deploy/image/sbom.sh dist/sbom.cdx.json

clean:
	rm -rf $(VENV) $(TOOLS) .arrears
