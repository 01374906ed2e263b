# The two commands of the README, and the steps they are made of (docs/getting-started.md).
#   make demo   bring LocalStack up, deploy, upload two sample studies, send a third to the
#               DICOM gateway, print verdicts and metadata
#   make test   lint, types, unit and integration tests, then end-to-end tests on LocalStack

PYTHON ?= $(shell local-runtime/find-python 3.12)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
STACK := local-runtime/stack
STACK_NAME ?= pacs-validator
DEPLOY_PARAMETERS := Stage=local UploadDeadlineSeconds=1800 ChunkInstances=100 TokenCacheSeconds=5
# LocalStack community has no WAF: the local API gets no web ACL.
DEPLOY_PARAMETERS += RequestsPerAddress=0
# LocalStack emulates no SnapStart and never moves an alias: the local API calls its latest code.
DEPLOY_PARAMETERS += SnapStart=Disabled
CHROMIUM := /usr/bin/chromium
TOOLS := .local/venvs/tools/bin
PREFLIGHT := .local/preflight
# Every sam build of this checkout (the pre-flight's, each stack's deploy) shares sam's cache
# and its record of what it built (build.toml, kept beside the build folders): a layer is
# built once, whichever of them comes first, and again only when its folder changes.
SAM_BUILDS := .local/build
# sam's cache key for a layer is a hash of its folder, bytecode included, and the tests write
# bytecode into layers/core: each build starts from folders without it (a layer compiles its own).
DROP_LAYER_BYTECODE := find layers -name __pycache__ -prune -exec rm -rf {} +
ARCH ?= x86_64 arm64
E2E_TESTS ?= tests-local/e2e
# make demo's steps: each prints one line with its time, its output goes to its log here, and
# a failing step prints its log's last lines and stops the demo.
DEMO_LOGS := .local/demo
STEP := local-runtime/steps.py

.PHONY: test lint preflight unit e2e e2e-browser browser dcmtk orthanc bench-gateway demo up \
	deploy down \
	bench-scale-e2e install-check

# Every venv is made by uv (pinned in constraints.txt, installed from PyPI into .local/uv on
# first use), or by pip where there is no uv: $(STACK) venv. --seed: pip in .venv too, for
# whoever wants it.
$(STAMP): pyproject.toml constraints.txt
	$(STACK) venv $(VENV) $(PYTHON) --seed -- -c constraints.txt -e '.[dev]'
	touch $@

# checkov pins boto3 and packaging below the project's pins: it lives in its own venv.
$(CHECKOV_STAMP): .ci/checkov-requirements.txt
	$(STACK) venv $(CHECKOV_VENV) $(PYTHON) -- -r $<
	touch $@

# The docs site is built with --strict (a dead link or anchor fails) into .local/site.
lint: $(STAMP) preflight
	$(BIN)/ruff check . $(STACK) local-runtime/check-installs local-runtime/preflight.py \
		docs/generate.py
	$(BIN)/mypy
	$(BIN)/mypy local-runtime/preflight.py local-runtime/steps.py docs/generate.py
	$(BIN)/lint-imports --no-cache
	$(BIN)/openapi-spec-validator docs/api/openapi.yaml
	for handler in functions/*/app.py; do $(BIN)/mypy "$$handler" || exit 1; done
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir .local/site

# Offline, what AWS refuses and LocalStack forgives (docs/deploy.md, Pre-flight): the template's
# checks, then a `sam build` as for AWS (every layer: wheels of each architecture) checked by
# local-runtime/preflight.py for ARCH (default both). The build stays in
# $(SAM_BUILDS)/preflight.build, its log in $(PREFLIGHT).
preflight: $(STAMP) $(CHECKOV_STAMP)
	$(STACK) install tools
	SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=us-east-1 $(TOOLS)/sam validate --lint \
		--template-file template.yaml
	$(BIN)/cfn-lint template.yaml
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --skip-download --framework cloudformation \
		-f template.yaml
	mkdir -p $(PREFLIGHT)
	$(DROP_LAYER_BYTECODE)
	cd $(PREFLIGHT) && PATH="$(CURDIR)/$(TOOLS):$$PATH" SAM_CLI_TELEMETRY=0 \
		PIP="$(CURDIR)/$(BIN)/python -m pip" sam build --template-file $(CURDIR)/template.yaml \
		--build-dir $(CURDIR)/$(SAM_BUILDS)/preflight.build \
		--cache-dir $(CURDIR)/$(SAM_BUILDS)/shared.cache --cached >build.log 2>&1 \
		|| { cat build.log; echo "sam build failed (log: $(PREFLIGHT)/build.log)"; exit 1; }
	$(BIN)/python local-runtime/preflight.py --build-dir $(SAM_BUILDS)/preflight.build \
		$(foreach arch,$(ARCH),--arch $(arch))

unit: $(STAMP) dcmtk
	$(BIN)/pytest -n auto --durations=8 tests-local/unit tests-local/integration

up:
	$(STACK) up

deploy: up
	$(DROP_LAYER_BYTECODE)
	$(STACK) deploy template.yaml $(STACK_NAME) --parameter-overrides $(DEPLOY_PARAMETERS)

down:
	$(STACK) down

# $(call debian_package,PACKAGE,PROGRAM,WHAT): Debian's PACKAGE, installed when PROGRAM is
# missing and apt-get can (as root); otherwise WHAT is skipped and says why.
define debian_package
	@if [ -x $(2) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's $(1) for $(3)"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(1) \
			>/dev/null || { apt-get update -q >/dev/null && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			$(1) >/dev/null; } || echo "$(1) could not be installed: $(3) will be skipped"; \
	else echo "no $(2) and no root apt-get: $(3) will be skipped (apt-get install $(1))"; fi
endef

# Debian's chromium for the browser test; playwright (the dev extra) drives it: no browser
# download.
browser:
	$(call debian_package,chromium,$(CHROMIUM),the browser test)

# DCMTK's storescu and echoscu, the senders of the gateway's test (tests-local/integration).
dcmtk:
	$(call debian_package,dcmtk,/usr/bin/storescu,the gateway's DCMTK test)

# Debian's Orthanc, the receiver benchmarks/bench_gateway.py measures the gateway beside.
orthanc:
	$(call debian_package,orthanc,/usr/sbin/Orthanc,the gateway benchmark's Orthanc)

# Not in CI: the gateway beside Orthanc, the same 1,000-instance study over one and four
# associations (~2 min).
bench-gateway: $(STAMP) orthanc dcmtk
	$(BIN)/python benchmarks/bench_gateway.py

# Starts LocalStack when it is not running, and stops it afterwards only in that case.
e2e: $(STAMP) browser dcmtk
	@running=$$($(STACK) status >/dev/null 2>&1 && echo yes); \
	$(MAKE) --no-print-directory deploy && \
	$(BIN)/pytest -rs --durations=12 $(E2E_TESTS); status=$$?; \
	[ -n "$$running" ] || $(STACK) down; \
	exit $$status

# The upload page in Chromium alone (also part of make e2e and make test).
e2e-browser:
	$(MAKE) --no-print-directory e2e E2E_TESTS=tests-local/e2e/test_browser.py

test: lint unit install-check e2e

# Quiet where make deploy (CI's) shows everything: the same steps, one line each.
demo:
	@$(STEP) venv $(DEMO_LOGS)/venv.log -- $(MAKE) --no-print-directory $(STAMP)
	@$(STEP) install $(DEMO_LOGS)/install.log -- $(STACK) install
	@$(STEP) dcmtk $(DEMO_LOGS)/dcmtk.log -- $(MAKE) --no-print-directory dcmtk
	@$(STEP) "LocalStack up" $(DEMO_LOGS)/up.log -- $(STACK) up
	@$(DROP_LAYER_BYTECODE)
	@$(STEP) build $(DEMO_LOGS)/build.log -- $(STACK) build template.yaml $(STACK_NAME)
	@$(STEP) deploy $(DEMO_LOGS)/deploy.log -- $(STACK) deploy-built $(STACK_NAME) \
		--parameter-overrides $(DEPLOY_PARAMETERS)
	@PACS_STACK_NAME=$(STACK_NAME) $(BIN)/python local-runtime/demo.py

# Not in CI: one 2,000-instance study end to end next to a 20-instance one (~15 min).
bench-scale-e2e: $(STAMP) deploy
	$(BIN)/python benchmarks/bench_e2e_scale.py --sizes 20,2000

# The package built from this checkout and installed (not editable, -c constraints.txt) into a
# fresh venv per extra on Python 3.10 and 3.13, its command run in each (~30 s; part of make test).
install-check:
	$(PYTHON) local-runtime/check-installs
