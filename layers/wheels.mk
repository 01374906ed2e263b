# What every layer's Makefile includes: `wheels` installs $(REQUIREMENTS) for $(MACHINE)
# (x86_64 or aarch64) into $(ARTIFACTS_DIR)/python, /opt/python on Lambda, and $(BYTECODE)
# compiles what the layer then holds. SAM passes make nothing but ARTIFACTS_DIR
# (aws-lambda-builders' custom_make): each layer's build target sets MACHINE.
#
# pip fetches wheels for Lambda's platform (Python 3.12 on Amazon Linux 2023, glibc 2.34), never
# this machine's: --only-binary=:all: refuses to build anything from source, so a dependency
# without a wheel for the target fails the build, loudly, instead of shipping a .so compiled here.
#
# `sam build --cached` rebuilds a layer when its own folder changes, not when this file does:
# after editing it, remove the cache (.local/preflight/cache, .local/build/<stack>.cache).

PIP ?= python3 -m pip
WHEELS_MK := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))
PYTHON ?= $(shell $(WHEELS_MK)../local-runtime/find-python 3.12)
# manylinux_2_17 (= manylinux2014) up to manylinux_2_34: every glibc Lambda's 2.34 can load.
# Listed one by one: pip (23.x) does not expand a manylinux_2_X platform to older ones.
GLIBC_MINORS := $(shell seq 17 34)

# $(call lambda_wheels,REQUIREMENTS_FILE[,MORE_PIP_OPTIONS]): install the requirements' wheels
# for CPython 3.12 on manylinux $(MACHINE) into the layer, or fail the build saying which.
define lambda_wheels
$(PIP) install --quiet --disable-pip-version-check --no-compile --only-binary=:all: \
	--implementation cp --python-version 3.12 --abi cp312 \
	--platform manylinux2014_$(MACHINE) \
	$(foreach minor,$(GLIBC_MINORS),--platform manylinux_2_$(minor)_$(MACHINE)) \
	--target "$(ARTIFACTS_DIR)/python" $(2) -r "$(1)" \
|| { echo "layer build for $(MACHINE) failed: a requirement in $(1)" \
	"has no wheel for CPython 3.12 on manylinux $(MACHINE) (pip names it above)." \
	"Nothing is built from source for Lambda, and every sam build makes the layers of" \
	"both architectures: pin a version with wheels for x86_64 and aarch64, or drop arm64" \
	"(the *Arm64 layers and the Architecture parameter in template.yaml; docs/deploy.md," \
	"Pre-flight)." >&2; exit 1; }
endef

wheels:
	mkdir -p "$(ARTIFACTS_DIR)/python"
	$(call lambda_wheels,$(REQUIREMENTS))

# Lambda mounts layers read-only: a module shipped without its bytecode is compiled again on
# every cold start (about 1 s of the validator's, measured by benchmarks/bench_cold_start.py).
# So the layer ships CPython 3.12's bytecode, unchecked-hash: used as it is, without comparing
# the source's time stamp, which a zip does not keep to the second.
BYTECODE = $(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' \
	|| { echo "the layer's bytecode must be CPython 3.12's (Lambda's python3.12):" \
		"PYTHON=$(PYTHON) is not; set PYTHON to a python3.12" >&2; exit 1; }; \
	$(PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)/python"

.PHONY: wheels
