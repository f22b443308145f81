# procwarden — see README.md. `sudo make run`, `make check`.
BUILD     ?= build
PREFIX    ?= /usr/local
CC        ?= cc
LUA       ?= lua5.4
BUSTED    ?= busted
FUZZ_SECONDS ?= 20

PKGS      := lua5.4 libmnl jansson libcrypto
DEB_PKGS  := build-essential clang pkg-config lua5.4 liblua5.4-dev libev-dev libmnl-dev \
             libjansson-dev libssl-dev lua-busted lua-check lua-dkjson
# the adversary specs build a small FUSE server (libfuse3) to attack the daemon with
SPEC_PKGS := libfuse3-dev fuse3

# libev ships no .pc file on Debian: find its header and library directly.
EV_HDR    := $(firstword $(wildcard /usr/include/ev.h /usr/include/libev/ev.h))
EV_INC    := $(filter-out /usr/include/,$(dir $(EV_HDR)))
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN      := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CFLAGS    ?= -O2 -g
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS) $(EXTRA_CFLAGS) -D_GNU_SOURCE \
             $(if $(EV_INC),-I$(EV_INC)) $(PKG_CFLAGS) -Isrc -I$(BUILD)
LDLIBS     = $(PKG_LIBS) -lev -lm

LUA_SRC   := $(sort $(wildcard lua/procwarden/*.lua))
EMBED_SRC := $(LUA_SRC) rules/default.lua
DAEMON_SRC:= $(filter-out src/fuzz_%.c,$(wildcard src/*.c))
DAEMON_OBJ:= $(patsubst src/%.c,$(BUILD)/obj/%.o,$(DAEMON_SRC)) $(BUILD)/obj/embedded.o
CORE_SRC  := src/core.c src/decision.c src/event.c src/proc.c src/replay.c src/ptable.c src/mounts.c src/sink.c src/log.c
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo 0.1)

.PHONY: all deps run check test lint clean install sanitize fuzz fuzz-deps bench soak

all: deps $(BUILD)/procwarden $(BUILD)/lua/procwarden/core.so

# Install what is missing, non-interactively; a no-op when everything is here.
deps:
	@missing=""; \
	pkg-config --exists $(PKGS) 2>/dev/null || missing="$(DEB_PKGS)"; \
	[ -n "$(EV_HDR)" ] || missing="$$missing libev-dev"; \
	command -v $(LUA) >/dev/null || missing="$$missing lua5.4"; \
	command -v busted >/dev/null || missing="$$missing lua-busted"; \
	command -v luacheck >/dev/null || missing="$$missing lua-check"; \
	$(LUA) -e 'require "dkjson"' 2>/dev/null || missing="$$missing lua-dkjson"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	pkg-config --exists fuse3 2>/dev/null && command -v fusermount3 >/dev/null || missing="$$missing $(SPEC_PKGS)"; \
	[ -z "$(NEED_CLANG)" ] || command -v clang >/dev/null || missing="$$missing clang libclang-rt-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing $$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h) | $(BUILD)/obj
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/embedded.c: $(EMBED_SRC) Makefile | $(BUILD)/obj
	@{ echo '/* generated from $(EMBED_SRC) */'; echo '#include "embedded.h"'; i=0; \
	  for f in $(EMBED_SRC); do echo "static const unsigned char f$$i[] = {"; \
	    od -An -v -tx1 $$f | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; echo '0};'; i=$$((i+1)); done; \
	  echo 'const struct pw_embedded pw_embedded[] = {'; i=0; \
	  for f in $(EMBED_SRC); do echo "{\"$$f\", f$$i, sizeof f$$i - 1},"; i=$$((i+1)); done; \
	  echo '{0, 0, 0}};'; } > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/embedded.o: $(BUILD)/embedded.c src/embedded.h
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# Link to a temporary name and rename: a running test never sees a half-written binary.
$(BUILD)/procwarden: $(DAEMON_OBJ)
	$(CC) $(ALL_CFLAGS) -o $@.tmp $^ $(LDFLAGS) $(LDLIBS) && mv -f $@.tmp $@

$(BUILD)/lua/procwarden/core.so: $(CORE_SRC) $(wildcard src/*.h) Makefile | $(BUILD)/obj
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fPIC -shared -o $@.tmp $(CORE_SRC) $(LDFLAGS) $(shell pkg-config --libs jansson 2>/dev/null) && mv -f $@.tmp $@

$(BUILD)/obj:
	@mkdir -p $@

src/version.h: ;
$(BUILD)/obj/main.o: EXTRA_CFLAGS += -DPW_VERSION='"$(VERSION)"'

run: all
	./$(BUILD)/procwarden $(RULES)

lint: deps
	luacheck -q lua rules spec

# Unit, rules and integration specs (integration ones are pending unless
# root), then luacheck; ends with a plain "N passed, N failed" line.
check: all
	@PW_BUILD=$(BUILD) BUSTED=$(BUSTED) LUA=$(LUA) sh spec/run.sh

test: check

# The whole suite against an ASan+UBSan build; any sanitizer report fails.
# Debian's lua5.4 is not built with ASan, so the interpreter that loads the
# instrumented core.so gets libasan preloaded and leak checks off; the daemon
# itself is then run with leak checks on (--check, a short live run).
SAN_BUILD := build-asan
SAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
sanitize: deps
	@$(MAKE) --no-print-directory BUILD=$(SAN_BUILD) CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" \
	  $(SAN_BUILD)/procwarden $(SAN_BUILD)/lua/procwarden/core.so
	@rm -rf $(SAN_BUILD)/reports && mkdir -p $(SAN_BUILD)/reports
	@LD_PRELOAD="$$($(CC) -print-file-name=libasan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=0:log_path=$(CURDIR)/$(SAN_BUILD)/reports/asan \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(CURDIR)/$(SAN_BUILD)/reports/ubsan \
	  PW_BUILD=$(SAN_BUILD) BUSTED=$(BUSTED) LUA=$(LUA) sh spec/run.sh; st=$$?; \
	export ASAN_OPTIONS=detect_leaks=1:log_path=$(CURDIR)/$(SAN_BUILD)/reports/asan-daemon; \
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(CURDIR)/$(SAN_BUILD)/reports/ubsan-daemon; \
	$(SAN_BUILD)/procwarden --check >/dev/null || st=1; \
	for f in rules/default.lua rules/examples/*.lua; do [ -f "$$f" ] && { $(SAN_BUILD)/procwarden --check "$$f" >/dev/null || st=1; }; done; \
	if [ "$$(id -u)" = 0 ]; then \
	  ( sleep 0.5; for i in 1 2 3 4 5 6 7 8 9 10; do /bin/true; sh -c 'exit 3'; done ) & \
	  $(SAN_BUILD)/procwarden --duration 2 --stats -o json >/dev/null 2>$(SAN_BUILD)/reports/daemon.stderr || st=1; wait; \
	fi; \
	if ls $(SAN_BUILD)/reports/asan* $(SAN_BUILD)/reports/ubsan* >/dev/null 2>&1; then \
	  echo "sanitizer reports:"; cat $(SAN_BUILD)/reports/asan* $(SAN_BUILD)/reports/ubsan* 2>/dev/null | head -100; st=1; \
	fi; \
	[ $$st = 0 ] && echo "sanitize: clean" || { echo "sanitize: FAILED"; exit 1; }

# libFuzzer targets (clang): every C parser of outside input.
FUZZ_TARGETS := $(patsubst spec/fuzz/fuzz_%.c,build/fuzz/fuzz_%,$(wildcard spec/fuzz/fuzz_*.c))
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
build/fuzz/fuzz_parser: spec/fuzz/fuzz_parser.c src/event.c src/event.h
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -D_GNU_SOURCE -Isrc -o $@ spec/fuzz/fuzz_parser.c src/event.c

build/fuzz/fuzz_replay: spec/fuzz/fuzz_replay.c $(CORE_SRC) $(wildcard src/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -D_GNU_SOURCE -Isrc $(PKG_CFLAGS) -o $@ spec/fuzz/fuzz_replay.c $(CORE_SRC) $(PKG_LIBS)

build/fuzz/fuzz_mounts: spec/fuzz/fuzz_mounts.c src/mounts.c src/mounts.h
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -D_GNU_SOURCE -Isrc -o $@ spec/fuzz/fuzz_mounts.c src/mounts.c

fuzz-deps:
	@$(MAKE) --no-print-directory deps NEED_CLANG=1

fuzz: fuzz-deps $(FUZZ_TARGETS)
	@st=0; for t in $(FUZZ_TARGETS); do \
	  name=$${t#build/fuzz/fuzz_}; work=build/fuzz/corpus-$$name; mkdir -p $$work; \
	  echo "fuzz $$name for $(FUZZ_SECONDS) s (seeds: spec/fuzz/corpus/$$name)"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=build/fuzz/$$name- \
	    $$work spec/fuzz/corpus/$$name 2>build/fuzz/$$name.log || { st=1; tail -40 build/fuzz/$$name.log; }; \
	  grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb" build/fuzz/$$name.log; \
	  echo "corpus: $$(ls $$work | wc -l) files"; \
	done; exit $$st

# Benchmarks (spec/bench): ratios against baselines measured in the same run.
bench: all
	@PW_BUILD=$(BUILD) sh spec/bench/run.sh

# 10 minutes of thread and exec storms; RSS and fds sampled every 10 s.
SOAK_SECONDS ?= 600
soak: all
	@PW_BUILD=$(BUILD) SOAK_SECONDS=$(SOAK_SECONDS) sh spec/bench/soak.sh

clean:
	rm -rf $(BUILD) build-*

# The daemon; the Lua modules and core.so for procwarden.testing (busted
# specs of your own policies); man pages when scdoc is there; the unit.
LUA_SHARE := $(DESTDIR)$(PREFIX)/share/lua/5.4/procwarden
LUA_LIB   := $(DESTDIR)$(PREFIX)/lib/lua/5.4/procwarden
install: all
	install -D -m 0755 $(BUILD)/procwarden $(DESTDIR)$(PREFIX)/sbin/procwarden
	install -d $(LUA_SHARE) $(LUA_LIB)
	install -m 0644 $(LUA_SRC) $(LUA_SHARE)/
	install -m 0755 $(BUILD)/lua/procwarden/core.so $(LUA_LIB)/core.so
	install -D -m 0644 rules/default.lua $(DESTDIR)$(PREFIX)/share/procwarden/default.lua
	install -d $(DESTDIR)$(PREFIX)/share/procwarden/examples
	install -m 0644 rules/examples/*.lua $(DESTDIR)$(PREFIX)/share/procwarden/examples/
	install -D -m 0644 dist/procwarden.service $(DESTDIR)/etc/systemd/system/procwarden.service
	@if command -v scdoc >/dev/null; then \
	  install -d $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man5; \
	  scdoc < doc/procwarden.8.scd > $(DESTDIR)$(PREFIX)/share/man/man8/procwarden.8; \
	  scdoc < doc/procwarden-rules.5.scd > $(DESTDIR)$(PREFIX)/share/man/man5/procwarden-rules.5; \
	else echo "scdoc not found: man pages not installed (apt-get install scdoc)"; fi
