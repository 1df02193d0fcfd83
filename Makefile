# kinesis-telemetry-extension: plain GNU Makefile.
#
# Conventions that let each part grow without editing this file:
#   common/*.c listener/*.c dispatcher/*.c controller/*.c  -> $(BUILD)/libkte.a
#       (controller/main.c is the only main(); listener and dispatcher are roles of the same binary)
#   tests/support/*.c       -> $(BUILD)/libktetest.a, linked into every test and bench binary
#   tests/unit/<part>/check_*.c -> $(BUILD)/tests/unit/<part>/check_*  (Check suites, one per module,
#                              placed by the part they test: common, listener, dispatcher, controller)
#   tests/integration/check_*.c -> $(BUILD)/tests/integration/check_*, run after the unit suites
#   tests/*/test_*.sh       -> shell-driven integration / end-to-end tests, run by `make check`
#   tests/lambda_sim/*.c    -> $(BUILD)/bin/lambda-sim       (the local Lambda environment)
#   tests/bench/bench_*.c   -> $(BUILD)/bench/bench_*        (run by `make bench`)
#   tests/fuzz/fuzz_*.c     -> $(BUILD)/fuzz/fuzz_*          (libFuzzer, run by `make fuzz`)

NAME      := kinesis-telemetry-extension
BUILD     ?= build
ARCH      ?= $(shell uname -m)
CC        ?= cc
PKG_CONFIG ?= pkg-config

WARN      := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
             -Wpointer-arith -Wcast-qual -Wformat=2 -Werror
CSTD      := -std=gnu11 -D_GNU_SOURCE
OPT       ?= -O2 -g
SAN       ?=
CPPFLAGS  += -I. -Icommon -MMD -MP
CFLAGS    += $(CSTD) $(OPT) $(WARN) $(SAN) -fno-strict-aliasing -pthread

# Dependencies: pkg-config where a .pc exists; civetweb ships none, so it is named explicitly.
PKGS      := libcurl json-c libcrypto zlib
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
PKG_LIBS  := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
CIVETWEB_LIBS ?= -lcivetweb
CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check 2>/dev/null)
CPPFLAGS  += $(PKG_CFLAGS)
LDLIBS    := $(PKG_LIBS) $(CIVETWEB_LIBS) -lpthread -lm
LDFLAGS   += $(SAN) -pthread $(EXTRA_LDFLAGS)

LIB_SRC   := $(wildcard common/*.c listener/*.c dispatcher/*.c) \
             $(filter-out controller/main.c,$(wildcard controller/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
LIB       := $(BUILD)/libkte.a
TSUP_SRC  := $(wildcard tests/support/*.c)
TSUP_OBJ  := $(TSUP_SRC:%.c=$(BUILD)/obj/%.o)
TSUP      := $(BUILD)/libktetest.a
EXE       := $(if $(wildcard controller/main.c),$(BUILD)/bin/$(NAME))
SIM_SRC   := $(wildcard tests/lambda_sim/*.c)
SIM_OBJ   := $(SIM_SRC:%.c=$(BUILD)/obj/%.o)
SIM       := $(if $(SIM_SRC),$(BUILD)/bin/lambda-sim)
UNIT_SRC  := $(wildcard tests/unit/*/check_*.c)
INTEG_SRC := $(wildcard tests/integration/check_*.c)
UNIT_BIN  := $(UNIT_SRC:%.c=$(BUILD)/%)
INTEG_BIN := $(INTEG_SRC:%.c=$(BUILD)/%)
TEST_SH   := $(sort $(wildcard tests/*/test_*.sh))
BENCH_SRC := $(wildcard tests/bench/bench_*.c)
BENCH_BIN := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)
FUZZ_SRC  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_SECONDS ?= 20

export BUILD
export KTE_BIN := $(abspath $(BUILD)/bin/$(NAME))
export KTE_SIM := $(abspath $(BUILD)/bin/lambda-sim)
export KTE_BUILD := $(abspath $(BUILD))

.PHONY: all check check-unit check-integration asan valgrind bench bench-run fuzz layer demo deps clean
# Keep test and bench objects (otherwise deleted as intermediates and recompiled on every change).
.SECONDARY:
all: $(LIB) $(EXE) $(SIM) $(UNIT_BIN) $(INTEG_BIN) $(BENCH_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/obj/tests/%.o: CPPFLAGS += $(CHECK_CFLAGS) -Itests/support

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && $(AR) rcs $@ $^

$(TSUP): $(TSUP_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && $(AR) rcs $@ $^ $(if $(TSUP_OBJ),,)

$(BUILD)/bin/$(NAME): $(BUILD)/obj/controller/main.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/lambda-sim: $(SIM_OBJ)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(LIB) $(TSUP)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(TSUP) $(LIB) $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(LIB) $(TSUP)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(TSUP) $(LIB) $(LDLIBS)

# Every test runs even if an earlier one failed; the target fails if any did.
check: deps
	$(MAKE) all
	$(MAKE) check-unit check-integration

check-unit: $(UNIT_BIN)
	@fail=0; for t in $(UNIT_BIN); do echo "== $$t"; $(TEST_WRAP) $$t || fail=1; done; exit $$fail

check-integration: all
	@fail=0; for t in $(filter-out $(SKIP_INTEG:%=$(BUILD)/tests/integration/%),$(INTEG_BIN)); do \
	   echo "== $$t"; $(TEST_WRAP) $$t || fail=1; done; \
	 for t in $(SKIP_INTEG); do echo "== SKIPPED $$t: $(SKIP_WHY)"; done; \
	 for t in $(TEST_SH); do echo "== $$t"; bash $$t || fail=1; done; exit $$fail

# Same tests, AddressSanitizer + UndefinedBehaviorSanitizer, in a separate build tree.
# Nothing is skipped (ASAN_SKIP_INTEG names suites to leave out, none today).
ASAN_SKIP_INTEG ?=
ASAN_SKIP_WHY   :=
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
asan: deps
	$(MAKE) BUILD=$(BUILD)/asan SAN="$(ASAN_FLAGS)" OPT="-O1 -g" all
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  CK_TIMEOUT_MULTIPLIER=$${CK_TIMEOUT_MULTIPLIER:-3} \
	  $(MAKE) BUILD=$(BUILD)/asan SAN="$(ASAN_FLAGS)" OPT="-O1 -g" check-unit check-integration \
	    SKIP_INTEG="$(ASAN_SKIP_INTEG)" SKIP_WHY="$(ASAN_SKIP_WHY)"

# Unit suites under valgrind, leaks are failures (CK_FORK=no so valgrind sees the test bodies).
valgrind: $(UNIT_BIN)
	@fail=0; for t in $(UNIT_BIN); do echo "== valgrind $$t"; \
	  CK_FORK=no KTE_UNDER_VALGRIND=1 valgrind -q --error-exitcode=99 --leak-check=full \
	    --errors-for-leak-kinds=definite,indirect $$t || fail=1; done; exit $$fail

# Recursive, like check: the flags from pkg-config are only right once deps has run.
bench: deps
	$(MAKE) bench-run

# Each benchmark's output is also kept in $(BUILD)/bench/out/ for the one report printed at the end.
bench-run: $(EXE) $(SIM) $(BENCH_BIN)
	@mkdir -p $(BUILD)/bench/out
	@for b in $(BENCH_BIN); do echo "== $$b"; o=$(BUILD)/bench/out/$$(basename $$b).txt; \
	  $$b >$$o 2>&1; rc=$$?; cat $$o; [ $$rc -eq 0 ] || exit 1; done
	@for s in $(sort $(wildcard tests/bench/bench_*.sh)); do echo "== $$s"; o=$(BUILD)/bench/out/$$(basename $$s).txt; \
	  bash $$s >$$o 2>&1; rc=$$?; cat $$o; [ $$rc -eq 0 ] || exit 1; done
	@bash tests/bench/report.sh $(BUILD)/bench/out docs/benchmarks.md

# libFuzzer targets: clang, sanitizers, the library sources compiled in directly.
FUZZ_CC   ?= clang
fuzz: deps
	@mkdir -p $(BUILD)/fuzz
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  $(FUZZ_CC) $(CSTD) -O1 -g -fsanitize=fuzzer,address,undefined -I. -Icommon -Itests/support $(PKG_CFLAGS) \
	    -o $(BUILD)/fuzz/$$n $$f $(LIB_SRC) tests/support/base64_decode.c $(LDLIBS) || exit 1; \
	  mkdir -p tests/fuzz/corpus/$$n $(BUILD)/fuzz/corpus-$$n; \
	  echo "== fuzz $$n for $(FUZZ_SECONDS)s"; \
	  $(BUILD)/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=1024 \
	    $(BUILD)/fuzz/corpus-$$n tests/fuzz/corpus/$$n || exit 1; done

layer: $(EXE)
	bash layer/build.sh $(ARCH)

demo: deps
	bash tests/demo/run.sh

deps:
	@bash .ci/deps.sh

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
