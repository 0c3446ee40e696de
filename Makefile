# smelt — one Makefile for every tool, the library, the tests and the demo.
#   make [MODE=release|debug|asan] [CC=gcc|clang]   build every tool into build/<mode>/
#   make deps      install missing Debian packages (apt-get)
#   make test      build and run the Criterion suites (SHARED=../shared)
#   make demo      run the pipeline on the shipped model
#   make fuzz      build libFuzzer targets (clang) and run each FUZZ_SECONDS
MODE ?= release
CC ?= gcc
SHARED ?= $(abspath ../shared)
BUILD ?= build/$(MODE)

DEB_PKGS := build-essential zlib1g-dev libcurl4-openssl-dev libcriterion-dev libjansson-dev libpcre2-dev time \
            clang libclang-rt-14-dev

# -ffp-contract=off: no fused multiply-add unless written, so quantized blocks
# stay bit-identical to llama.cpp's (its base library is built without FMA).
# No -ffast-math anywhere. SIMD kernels use target attributes + CPUID dispatch,
# so the baseline build runs on any x86-64.
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wvla -Wformat=2 -Wundef -Wpointer-arith -Wno-unused-parameter
CFLAGS_BASE := -std=c17 -D_GNU_SOURCE -ffp-contract=off -pthread -I. -Iformats $(WARN) -MMD -MP
ifeq ($(MODE),release)
  CFLAGS_MODE := -O2 -g
else ifeq ($(MODE),debug)
  CFLAGS_MODE := -O0 -g3
else ifeq ($(MODE),asan)
  CFLAGS_MODE := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
  LDFLAGS_MODE := -fsanitize=address,undefined
else
  $(error MODE must be release, debug or asan)
endif
CFLAGS ?=
override CFLAGS := $(CFLAGS_BASE) $(CFLAGS_MODE) $(CFLAGS)
LDLIBS := -ljansson -lpcre2-8 -lz -lcurl -lm -pthread
override LDFLAGS += $(LDFLAGS_MODE)

TOOLS := convert merge imatrix quantize infer dump fetch recipe
# Libraries: libsmelt-formats.a (formats/) and one libsmelt-<tool>.a per tool
# folder holding its non-main sources, so tests can call a tool's internals.
# A tool may use another tool's library: list it in <TOOL>_USES.
imatrix_USES := infer
quantize_USES :=
FORMATS_LIB := $(BUILD)/libsmelt-formats.a
FORMATS_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard formats/*.c))
tool_srcs = $(filter-out $(1)/main.c,$(wildcard $(1)/*.c))
tool_objs = $(patsubst %.c,$(BUILD)/obj/%.o,$(call tool_srcs,$(1)))
tool_lib = $(if $(call tool_srcs,$(1)),$(BUILD)/libsmelt-$(1).a)
tool_libs = $(foreach u,$(1) $($(1)_USES),$(call tool_lib,$(u)))
# recipe/ builds smelt-build (the name users type); every other folder X builds smelt-X.
bin_name = $(if $(filter recipe,$(1)),build,$(1))
BINS := $(foreach t,$(TOOLS),$(if $(wildcard $(t)/main.c),$(BUILD)/smelt-$(call bin_name,$(t))))
# tests/test_<module>[_what].c links libsmelt-<module>.a (and what it uses).
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_BINS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(filter-out tests/test_%.c,$(wildcard tests/*.c))
TEST_SUPPORT_OBJS := $(TEST_SUPPORT:%.c=$(BUILD)/obj/%.o)
# an archive, so a suite pulls only the helpers it calls (support_infer.o
# needs libsmelt-infer, which most suites do not link)
TEST_SUPPORT_LIB := $(BUILD)/libsmelt-testsupport.a
test_module = $(word 1,$(subst _, ,$(patsubst test_%,%,$(1))))

.PHONY: all deps test demo fuzz fuzz-build clean bench
# keep objects between runs (they are intermediates of pattern-rule chains)
.SECONDARY:
all: $(BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

.SECONDEXPANSION:
$(FORMATS_LIB): $(FORMATS_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libsmelt-%.a: $$(call tool_objs,$$*)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/smelt-%: $(BUILD)/obj/%/main.o $$(call tool_libs,$$*) $(FORMATS_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/smelt-build: $(BUILD)/obj/recipe/main.o $(call tool_libs,recipe) $(FORMATS_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(TEST_SUPPORT_LIB): $(TEST_SUPPORT_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_SUPPORT_LIB) $$(call tool_libs,$$(call test_module,$$*)) $(FORMATS_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcriterion $(LDLIBS)

# Every suite runs with the tool binaries on PATH and SMELT_SHARED set; one
# Criterion line per suite ("Synthesis: Tested: N | Passing: N | Failing: 0").
test: $(BINS) $(TEST_BINS)
	@test -d "$(SHARED)" || { echo "make test: $(SHARED) not found (set SHARED=...)"; exit 1; }
	@fail=0; for t in $(TEST_BINS); do \
	  echo "== $$t"; \
	  SMELT_SHARED="$(SHARED)" SMELT_BIN="$(abspath $(BUILD))" PATH="$(abspath $(BUILD)):$$PATH" \
	    $$t --jobs 2 || fail=1; \
	done; exit $$fail

deps:
	@missing=""; for p in $(DEB_PKGS) $(EXTRA_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "deps: all present"; fi

demo: deps
	$(MAKE) all
	./scripts/demo.sh $(BUILD)

BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))
$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(FORMATS_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Fuzzing: every tests/fuzz/fuzz_<name>.c is a libFuzzer target built with
# clang and linked against one sanitizer-instrumented archive of all library
# sources (compiled once, not once per target); corpora seed from
# tests/fuzz/corpus/<name> and from the shared files named in
# tests/fuzz/seeds.txt. FUZZ_DIR may be overridden (one per concurrent user).
FUZZ_SECONDS ?= 60
FUZZ_DIR ?= build/fuzz
FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -ffp-contract=off -pthread -I. -Iformats -g -O1 -MMD -MP \
               -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(FUZZ_DIR)/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_LIB_SRCS := $(wildcard formats/*.c) $(foreach t,$(TOOLS),$(call tool_srcs,$(t)))
FUZZ_LIB_OBJS := $(FUZZ_LIB_SRCS:%.c=$(FUZZ_DIR)/obj/%.o)
$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -fsanitize-coverage-ignorelist=tests/fuzz/coverage-ignore.txt \
	      -c $< -o $@
$(FUZZ_LIB_OBJS): tests/fuzz/coverage-ignore.txt
$(FUZZ_DIR)/libsmelt-fuzz.a: $(FUZZ_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^
$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_DIR)/libsmelt-fuzz.a
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_DIR)/libsmelt-fuzz.a $(LDLIBS)
fuzz-build: $(FUZZ_TARGETS)
fuzz: fuzz-build
	SHARED="$(SHARED)" FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_DIR="$(FUZZ_DIR)" tests/fuzz/run.sh $(FUZZ_TARGETS)
-include $(shell find $(FUZZ_DIR) -name '*.d' -type f 2>/dev/null)

# Fault injection (tests/test_faults*.c): these suites drive every tool's
# library, so they link all of them (the generic rule only links
# libsmelt-faults.a, which does not exist), and all get the allocation shim
# tests/faults/faultalloc.c with the allocator wrapped, so the
# N-th malloc/calloc/realloc/strdup/strndup of our code (and of jansson, via
# json_set_alloc_funcs) can be made to fail.
FAULT_TESTS := $(filter $(BUILD)/tests/test_faults%,$(TEST_BINS))
FAULT_LIBS := $(foreach t,convert merge quantize imatrix infer,$(call tool_lib,$(t)))
FAULT_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free,--wrap=strdup,--wrap=strndup \
              -Wl,--wrap=json_loadb,--wrap=json_loads,--wrap=json_load_file
$(FAULT_TESTS): $(FAULT_LIBS)
$(FAULT_TESTS): LDLIBS := $(FAULT_LIBS) $(FORMATS_LIB) $(LDLIBS)
$(FAULT_TESTS): $(BUILD)/obj/tests/faults/faultalloc.o
$(FAULT_TESTS): override LDFLAGS += $(FAULT_WRAP)

# Benchmarks build here; each bench/*.sh runs one (see bench/README.md).
bench: $(BINS) $(BENCH_BINS)

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
