# bitmap-trace: a QEMU 10.0 patch series kept as an overlay.
#
#   make deps      install the Debian packages needed (as root)
#   make           fetch QEMU, lay the series on it, build build/qemu-system-x86_64
#   make check     run every test; ends with "N passed, N failed, N skipped"
#   make check-sanitizers  the series' qtests built with ASan and UBSan
#   make demo      profile a real Linux guest with bitmap-trace
#   make validate  bt-report's predictions against real migrations (QUICK=1: 4 small cases)
#   make bench     what a trace costs the guest and the host, next to migration (QUICK=1)
#   make series    the series as git format-patch output against pristine QEMU
#   make series-check  every commit of it builds, passes its tests, checkpatch
#   make docs      build QEMU's manual (the rst page, the QAPI docs) with -W
#
# Each step is a stamp under build/; a re-run does only what changed.
#   QEMU_SRC=/path/to/qemu-10.0.x        use a tree of your own (copied)
#   QEMU_TARBALL=/path/to/qemu-10.0.x.tar.xz  use an upstream release tarball
#   QEMU_BASE=10.2                        another QEMU release as the base: its
#       own patch queue patches/10.2/, its own build dir build/10.2/ (the
#       default, 10.0, is patches/10.0/ and build/)

SHELL := /bin/bash
TOP := $(CURDIR)
QEMU_BASE ?= 10.0
export QEMU_BASE
PATCHDIR := patches/$(QEMU_BASE)
ifeq ($(QEMU_BASE),10.0)
BUILD := build
else
BUILD := $(TOP)/build/$(QEMU_BASE)
export BUILD
ifeq ($(wildcard $(TOP)/$(PATCHDIR)/series),)
$(error QEMU_BASE=$(QEMU_BASE): there is no $(PATCHDIR)/series (README: QEMU bases))
endif
endif
OBJ := $(abspath $(BUILD))/obj

PATCHES := $(TOP)/$(PATCHDIR)/series $(wildcard $(TOP)/$(PATCHDIR)/*.patch)

# Firmware: Debian's SeaBIOS and iPXE packages; QEMU's own x86 option ROMs
# (Debian strips them) are built from pc-bios/optionrom into the build tree.
FIRMWAREPATH := $(OBJ)/pc-bios/optionrom:/usr/share/seabios:/usr/lib/ipxe/qemu:/usr/share/qemu

CONFIGURE_FLAGS := \
	--python=/usr/bin/python3 --target-list=x86_64-softmmu \
	--without-default-features \
	--enable-kvm --enable-tcg --enable-slirp \
	--disable-docs --disable-install-blobs --disable-download \
	--enable-trace-backends=log \
	--firmwarepath=$(FIRMWAREPATH) \
	$(if $(shell command -v ccache),--cc="ccache gcc" --cxx="ccache g++")

all: $(BUILD)/qemu-system-x86_64

deps:
	bash scripts/deps.sh

$(BUILD)/.stamp-deps: scripts/deps.sh
	bash scripts/deps.sh

$(BUILD)/.stamp-fetch: scripts/fetch-qemu.sh | $(BUILD)/.stamp-deps
	bash scripts/fetch-qemu.sh
	touch $@

$(BUILD)/.stamp-assemble: $(BUILD)/.stamp-fetch $(PATCHES) scripts/assemble.sh
	flock $(BUILD)/.lock bash scripts/assemble.sh full
	touch $@

# Reconfigure only when the configure flags change
$(BUILD)/configure-flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CONFIGURE_FLAGS)' | cmp -s - $@ || echo '$(CONFIGURE_FLAGS)' > $@

$(BUILD)/.stamp-configure: $(BUILD)/.stamp-assemble $(BUILD)/configure-flags
	mkdir -p $(OBJ)
	flock $(BUILD)/.lock bash scripts/assemble.sh overlay
	cd $(OBJ) && flock $(abspath $(BUILD))/.lock $(abspath $(BUILD))/qemu/configure $(CONFIGURE_FLAGS)
	touch $@

# The overlay is refreshed on every build: only changed files are rewritten.
$(BUILD)/qemu-system-x86_64: $(BUILD)/.stamp-configure FORCE
	bash scripts/build.sh
	@echo "QEMU $$(cat $(BUILD)/qemu-version) with the series: $@"

# Build and run one qtest:  make qtest T=bitmap-trace-test [ARGS="-p /x86_64/..."]
qtest: all
	bash scripts/build.sh tests/qtest/$(T)
	cd $(OBJ) && QTEST_QEMU_BINARY=./qemu-system-x86_64 tests/qtest/$(T) --tap -k $(ARGS)

check: all
	CONFIGURE_FLAGS='$(CONFIGURE_FLAGS)' bash scripts/check.sh

# The series' qtests, qmp-cmd-test and test-hmp built with ASan and UBSan in
# $(BUILD)/asan-obj; any sanitizer report fails.  Same summary line as check.
check-sanitizers: $(BUILD)/.stamp-assemble
	CONFIGURE_FLAGS='$(CONFIGURE_FLAGS)' CHECK_ONLY=sanitizers bash scripts/check.sh

demo: all
	bash scripts/demo.sh

# A benchmark, not a test: about 15 minutes on 2 cores (QUICK=1: about 1).
# VALIDATE_ARGS="--cases seq" picks cases; QEMU=... runs another binary.
validate: $(if $(QEMU),,all)
	/usr/bin/python3 scripts/validate.py $(if $(QUICK),--quick) $(VALIDATE_ARGS)

# What bitmap-trace costs, next to migration's own sync: about 30 minutes on
# 2 cores (QUICK=1: about 1.5).  BENCH_ARGS="--cases kvm-16G --repeat 3".
bench: $(if $(QEMU),,all)
	/usr/bin/python3 scripts/bench.py $(if $(QUICK),--quick) $(BENCH_ARGS)

series: $(BUILD)/.stamp-fetch
	bash scripts/series.sh

series-check: $(BUILD)/.stamp-fetch
	bash scripts/series.sh
	CONFIGURE_FLAGS='$(CONFIGURE_FLAGS)' bash scripts/series-check.sh

# QEMU's own sphinx setup, warnings as errors, in a build dir of its own
docs: $(BUILD)/.stamp-assemble
	bash scripts/docs.sh $(CONFIGURE_FLAGS)

clean:
	rm -rf $(OBJ) $(BUILD)/qemu $(BUILD)/.stamp-assemble $(BUILD)/.stamp-configure

distclean:
	rm -rf $(BUILD)

FORCE:
.PHONY: bench all deps check check-sanitizers demo validate qtest series series-check docs clean distclean FORCE
