# One build for every program, library and test of the key delivery network.
# `make` builds optimised binaries into build/release; `make test` builds an
# ASan/UBSan variant into build/asan and runs every suite against it.

MODE    ?= release
BUILD   := build/$(MODE)
BIN     := $(BUILD)/bin
OBJ     := $(BUILD)/obj
PKGS    := libmicrohttpd gnutls jansson libcurl lmdb openssl
WARN    := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
CFLAGS_COMMON := -std=c11 -D_GNU_SOURCE -I. $(WARN) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread

ifeq ($(MODE),asan)
  CFLAGS_MODE := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
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
.PHONY: all deps test unit integration conformance bench run clean
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

deps:
	@sh docker/install-deps.sh

test: deps
	$(MAKE) MODE=asan all unit-bins
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
