# One build for every program, library and test of the key delivery network.
# `make` builds optimised binaries into build/release; `make test` builds an
# ASan/UBSan variant into build/asan and runs every suite against it; `make
# fuzz` builds the libFuzzer harnesses of tests/fuzz with clang into
# build/fuzz and runs each for FUZZ_SECONDS.

MODE    ?= release
BUILD   := build/$(MODE)
BIN     := $(BUILD)/bin
OBJ     := $(BUILD)/obj
PKGS    := libmicrohttpd gnutls jansson libcurl lmdb openssl
WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
# p11-kit-1: the PKCS#11 header only (modules are loaded with dlopen).
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -I. $(WARN) $(shell pkg-config --cflags $(PKGS) p11-kit-1 2>/dev/null)
LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread -lm -ldl

ifeq ($(MODE),asan)
  CFLAGS_MODE := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS_MODE := -fsanitize=address,undefined
else ifeq ($(MODE),fuzz)
  # The sources again, with clang: coverage for libFuzzer, ASan and UBSan.
  ifeq ($(origin CC),default)
    CC := clang
  endif
  CFLAGS_MODE := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
                 -fno-sanitize-recover=undefined
  LDFLAGS_MODE := -fsanitize=address,undefined
else
  CFLAGS_MODE := -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2
  LDFLAGS_MODE := -Wl,-z,relro,-z,now
endif
CFLAGS  := $(CFLAGS_COMMON) $(CFLAGS_MODE) $(EXTRA_CFLAGS)
LDFLAGS := $(LDFLAGS_MODE)

# The layers, bottom to top (docs/ARCHITECTURE.md): each uses only those
# above it in this list.
API_SRC     := $(wildcard api/*.c)
RUNTIME_SRC := $(wildcard runtime/*.c)
STORE_SRC   := $(wildcard store/*.c)
SAECLI_SRC := sae-client/main.c $(wildcard sae-client/cli_*.c)
SAELIB_SRC := $(filter-out $(SAECLI_SRC),$(wildcard sae-client/*.c))
RELAY_SRC  := $(wildcard relay/*.c)
KME_SRC    := $(wildcard kme/*.c)
SIM_SRC    := $(wildcard qkd-sim/*.c)
ENC_SRC    := $(wildcard encryptor/*.c)
UNIT_SRC   := $(wildcard tests/unit/*.c)
BENCH_SRC  := $(wildcard tests/bench/*.c)
TOOLS_SRC  := $(wildcard tests/tools/*.c)

obj = $(patsubst %.c,$(OBJ)/%.o,$(1))

LIBAPI     := $(BUILD)/lib/libqkdapi.a
LIBRUNTIME := $(BUILD)/lib/libqkdruntime.a
LIBSTORE   := $(BUILD)/lib/libqkdstore.a
LIBSAE     := $(BUILD)/lib/libsaeclient.a
KME_OBJS   := $(call obj,$(KME_SRC) $(RELAY_SRC))
# The encryptor's modules without its main().
ENC_OBJS   := $(call obj,$(filter-out encryptor/main.c,$(ENC_SRC)))

PROGRAMS := $(BIN)/kme $(BIN)/qkd-sim $(BIN)/sae-client $(BIN)/encryptor
# Helpers of the test suites: one program per tests/tools/*.c, next to the others.
TOOL_BINS := $(patsubst tests/tools/%.c,$(BIN)/%,$(TOOLS_SRC))
.PHONY: all deps test unit integration conformance bench run clean fuzz fuzz-bins
all: $(PROGRAMS) $(TOOL_BINS)

$(OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIBAPI): $(call obj,$(API_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
$(LIBRUNTIME): $(call obj,$(RUNTIME_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
$(LIBSTORE): $(call obj,$(STORE_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^
$(LIBSAE): $(call obj,$(SAELIB_SRC))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BIN)/kme: $(KME_OBJS) $(LIBSTORE) $(LIBRUNTIME) $(LIBAPI)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
$(BIN)/qkd-sim: $(call obj,$(SIM_SRC)) $(LIBRUNTIME) $(LIBAPI)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
$(BIN)/sae-client: $(call obj,$(SAECLI_SRC)) $(LIBSAE) $(LIBRUNTIME) $(LIBAPI)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
$(BIN)/encryptor: $(call obj,encryptor/main.c) $(ENC_OBJS) $(LIBSAE) $(LIBRUNTIME) $(LIBAPI)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)
$(TOOL_BINS): $(BIN)/%: $(OBJ)/tests/tools/%.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# Unit tests (check): one binary per tests/unit/test_*.c, linked with every
# module except the programs' main() files.
UNIT_LINK := $(filter-out $(call obj,kme/main.c),$(KME_OBJS)) $(call obj,$(filter-out sae-client/main.c,$(SAECLI_SRC))) $(ENC_OBJS) $(LIBSAE) $(LIBSTORE) $(LIBRUNTIME) $(LIBAPI)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BIN)/unit/%,$(UNIT_SRC))
$(BIN)/unit/%: $(call obj,tests/unit/%.c) $(UNIT_LINK)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(shell pkg-config --libs check)

BENCH_BINS := $(patsubst tests/bench/%.c,$(BIN)/bench/%,$(BENCH_SRC))
$(BIN)/bench/%: $(call obj,tests/bench/%.c) $(call obj,encryptor/otp.c encryptor/frame.c) $(LIBSAE) $(LIBRUNTIME) $(LIBAPI)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# libFuzzer harnesses: one program per tests/fuzz/fuzz_NAME.c, linked with
# the api layer and the modules it names in FUZZ_DEPS_NAME. Built in
# MODE=fuzz only (build/fuzz/bin/fuzz_NAME); `make fuzz-bins` from any mode.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_ALL := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_NAMES ?= $(FUZZ_ALL)
FUZZ_SECONDS ?= 60
FUZZ_DEPS_etsi_request := runtime/json_wipe.c
FUZZ_DEPS_etsi_response := runtime/json_wipe.c
FUZZ_DEPS_kme_msgs := runtime/json_wipe.c
FUZZ_DEPS_kme_link_view := runtime/json_wipe.c
FUZZ_DEPS_kme_link_ids := runtime/json_wipe.c
FUZZ_DEPS_kme_relay_json := runtime/json_wipe.c
FUZZ_DEPS_kme_relay_wire := runtime/json_wipe.c
FUZZ_DEPS_kme_advert := runtime/json_wipe.c
FUZZ_DEPS_kme_config := kme/config.c kme/store_key_config.c kme/sae_policy.c runtime/log.c runtime/json_wipe.c runtime/json_settings.c
FUZZ_DEPS_encryptor_config := encryptor/config.c encryptor/original_dst.c runtime/json_wipe.c runtime/json_settings.c
FUZZ_DEPS_encryptor_frame := encryptor/frame.c
FUZZ_DEPS_encryptor_stream := encryptor/stream_rx.c encryptor/frame.c encryptor/keyring.c encryptor/otp.c \
                              encryptor/gcm.c runtime/otp_xor.c
FUZZ_DEPS_qkd_sim_state :=

ifeq ($(MODE),fuzz)
fuzz-bins: $(patsubst %,$(BIN)/fuzz_%,$(FUZZ_ALL))
.SECONDARY: $(call obj,$(FUZZ_SRC))
.SECONDEXPANSION:
$(BIN)/fuzz_%: $(OBJ)/tests/fuzz/fuzz_%.o $$(call obj,$$(FUZZ_DEPS_$$*)) $(LIBAPI)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS) -lm
else
fuzz-bins:
	$(MAKE) MODE=fuzz fuzz-bins
endif

# Runs each harness of FUZZ_NAMES (default: all) for FUZZ_SECONDS on
# build/fuzz/corpus/NAME, a copy of tests/fuzz/corpus/NAME that keeps what
# the fuzzer adds; crashes go to build/fuzz/artifacts. FUZZ_FLAGS: more
# libFuzzer options.
fuzz: deps
	$(MAKE) MODE=fuzz fuzz-bins
	@failed=""; for n in $(FUZZ_NAMES); do \
	    c=build/fuzz/corpus/$$n; mkdir -p $$c build/fuzz/artifacts; cp tests/fuzz/corpus/$$n/* $$c/; \
	    echo "== fuzz_$$n: $(FUZZ_SECONDS) s on $$c"; \
	    build/fuzz/bin/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        -artifact_prefix=build/fuzz/artifacts/$$n- $(FUZZ_FLAGS) $$c || failed="$$failed $$n"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed (inputs in build/fuzz/artifacts)"; exit 1; fi

deps:
	@sh docker/install-deps.sh

test: deps
	$(MAKE) -j$$(nproc) MODE=asan all unit-bins
	bash tests/run-all.sh build/asan

unit-bins: $(UNIT_BINS)
bench-bins: $(BENCH_BINS)

bench: deps
	$(MAKE) MODE=release all bench-bins
	sh tests/bench/run-bench.sh build/release

run: deps
	$(MAKE) MODE=release all
	bash demo/star.sh build/release

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
