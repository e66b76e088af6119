# dbm - zero-downtime PostgreSQL migration toolkit
PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR     = $(PREFIX)/bin
MANDIR     = $(PREFIX)/share/man/man1
DATADIR    = $(PREFIX)/share/dbm

CC        ?= cc
PKGS       = libpq libxxhash jansson rdkafka
CFLAGS    ?= -O2 -g
# the project's flags come first and survive a CFLAGS given on the command
# line (make CFLAGS=-O0 keeps -Wall -Werror)
BASE_CFLAGS = -std=c11 -Wall -Wextra -Werror -pthread -Ilib \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
ALL_CFLAGS = $(BASE_CFLAGS) $(CFLAGS)
LDLIBS    += $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lpq -lxxhash -ljansson -lrdkafka) -pthread

# Sanitizer builds (make test-asan, and the unit tests in make test): clang,
# AddressSanitizer (with LeakSanitizer) and UndefinedBehaviorSanitizer, any
# report fatal. Run-time options: scripts/run-tests.sh.
ASAN_B     = build-asan
ASAN_CC    = clang
SANITIZE   = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
ASAN_MAKE  = $(MAKE) --no-print-directory B=$(ASAN_B) CC=$(ASAN_CC) CFLAGS="-O1 -g $(SANITIZE)"

# Fuzzing (make fuzz): libFuzzer targets in tests/fuzz, one per input
# surface, each run FUZZ_SECONDS on its corpus; a crash fails the run.
FUZZ_B       = build-fuzz
FUZZ_SECONDS = 60
FUZZERS      = pgoutput debezium dms hashfile

B          = build
TOOLS      = dbm-hash dbm-diff dbm-snapshot dbm-cdc-apply dbm-freeze dbm-switch dbm-rollback
LIB_SRC    = $(wildcard lib/*.c)
LIB_OBJ    = $(LIB_SRC:lib/%.c=$(B)/lib/%.o)
BINS       = $(TOOLS:%=$(B)/%)
MANS       = $(TOOLS:%=docs/man/%.1)

.PHONY: all test test-asan asan-unit fuzz unit demo bench bench-hash bench-snapshot bench-apply bench-cutover bench-debezium bench-e2e bench-soak \
        install man clean setup

all: $(BINS) $(B)/unit-tests $(B)/fuzz-replay $(B)/kafka-mock

$(B)/lib/%.o: lib/%.c lib/*.h | $(B)/lib
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(B)/libdbm.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(B)/dbm-%: tools/dbm-%.c $(B)/libdbm.a lib/*.h
	$(CC) $(ALL_CFLAGS) -o $@ $< $(B)/libdbm.a $(LDLIBS)

$(B)/unit-tests: tests/unit/*.c tests/unit/*.h $(B)/libdbm.a
	$(CC) $(ALL_CFLAGS) -Itests/unit -o $@ tests/unit/*.c $(B)/libdbm.a $(LDLIBS)

# every fuzz target's entry point, without libFuzzer: replays the kept
# inputs (tests/fuzz/regressions, tests/fuzz/corpus) in make test
$(B)/fuzz-replay: tests/fuzz/*.c tests/fuzz/*.h tools/*.c $(B)/libdbm.a
	$(CC) $(ALL_CFLAGS) -Itests/fuzz -o $@ tests/fuzz/*.c $(B)/libdbm.a $(LDLIBS)

# a Kafka protocol peer for the tests (librdkafka's mock cluster)
$(B)/kafka-mock: tests/helpers/kafka-mock.c | $(B)/lib
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LDLIBS)

$(B)/lib:
	mkdir -p $@

setup:
	@scripts/setup.sh

# every tier: unit tests, the bats suites on real PostgreSQL, pgbouncer and
# librdkafka's mock cluster, then the end-to-end tier (real Kafka and
# Debezium from Maven Central, cached after the first run)
# (the unit tests and the fuzz regression inputs run twice: plain, and
# under ASan+UBSan from build-asan)
test:
	@scripts/setup.sh --e2e
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory asan-unit
	@scripts/run-tests.sh

# the sanitizer build of the unit tests and the fuzz replayer only
asan-unit:
	@$(ASAN_MAKE) $(ASAN_B)/unit-tests $(ASAN_B)/fuzz-replay

# every tier against the sanitizer build of every tool (build-asan); any
# ASan or UBSan report fails the run; DBM_SANITIZED lets memory-bound
# tests skip their RSS limits; one suite file at a time (ASan is slow)
test-asan:
	@scripts/setup.sh --e2e
	@$(ASAN_MAKE) all
	@DBM_TEST_JOBS=$${DBM_TEST_JOBS:-1} DBM_BIN=$(CURDIR)/$(ASAN_B) DBM_SANITIZED=1 scripts/run-tests.sh

# libFuzzer builds of the fuzz targets (clang, ASan+UBSan), run for
# FUZZ_SECONDS each on copies of tests/fuzz/corpus/<target> and
# tests/fuzz/regressions/<target>; crash inputs land in $(FUZZ_B)
fuzz: $(FUZZERS:%=$(FUZZ_B)/fuzz-%)
	@scripts/fuzz.sh $(FUZZ_B) $(FUZZ_SECONDS) $(FUZZERS)

FUZZ_CFLAGS = $(BASE_CFLAGS) -O1 -g $(SANITIZE)
FUZZ_OBJ    = $(LIB_SRC:lib/%.c=$(FUZZ_B)/lib/%.o)

$(FUZZ_B)/lib/%.o: lib/%.c lib/*.h | $(FUZZ_B)/lib
	$(ASAN_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_B)/libdbm.a: $(FUZZ_OBJ)
	$(AR) rcs $@ $^

$(FUZZ_B)/fuzz-%: tests/fuzz/fuzz-%.c tests/fuzz/*.h tools/*.c $(FUZZ_B)/libdbm.a
	$(ASAN_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -DDBM_LIBFUZZER -Itests/fuzz \
	  -o $@ $< $(FUZZ_B)/libdbm.a $(LDLIBS)

$(FUZZ_B)/lib:
	mkdir -p $@

unit: $(B)/unit-tests
	$(B)/unit-tests

demo: setup
	@$(MAKE) --no-print-directory all
	@runbooks/demo.sh

bench: bench-hash bench-snapshot bench-apply bench-cutover bench-debezium

bench-hash: setup
	@$(MAKE) --no-print-directory all
	@bench/hash.sh

bench-snapshot: setup
	@$(MAKE) --no-print-directory all
	@bench/snapshot.sh

bench-apply: setup
	@$(MAKE) --no-print-directory all
	@bench/apply.sh

bench-cutover: setup
	@$(MAKE) --no-print-directory all
	@bench/cutover.sh

bench-debezium: setup
	@$(MAKE) --no-print-directory all
	@bench/debezium.sh

# dbm-cdc-apply's memory and descriptors over a 10-minute apply
bench-soak: setup
	@$(MAKE) --no-print-directory all
	@bench/soak.sh

# real Debezium and Kafka: dbm-cdc-apply vs Debezium's JDBC sink connector
bench-e2e:
	@scripts/setup.sh --e2e
	@$(MAKE) --no-print-directory all
	@bench/e2e.sh

# man pages are generated from --help and committed
# docs/man/<tool>.h2m, when present, gives NAME, SYNOPSIS, DESCRIPTION,
# EXIT STATUS, EXAMPLES...; without one, NAME comes from --help's first line
man: $(BINS) $(wildcard docs/man/*.h2m)
	@for t in $(TOOLS); do \
	  if [ -f docs/man/$$t.h2m ]; then set -- --include=docs/man/$$t.h2m; \
	  else set -- --name="$$(build/$$t --help | head -1 | sed 's/^[^ ]* //')"; fi; \
	  help2man --no-info --version-string="$$(build/$$t --version | awk '{print $$3}')" \
	    "$$@" --output=docs/man/$$t.1 build/$$t || exit 1; done

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR) $(DESTDIR)$(DATADIR)/runbooks
	install -m 755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 644 $(wildcard docs/man/*.1) $(DESTDIR)$(MANDIR)/
	install -m 755 $(wildcard runbooks/*.sh) $(DESTDIR)$(DATADIR)/runbooks/

clean:
	rm -rf $(B) $(ASAN_B) $(FUZZ_B)

# the end-to-end tier: a real Kafka broker and Debezium's connector on Kafka
# Connect, fetched from Maven Central and cached (scripts/e2e-kafka.sh)
.PHONY: test-e2e
test-e2e:
	@scripts/setup.sh --e2e
	@$(MAKE) --no-print-directory all
	@scripts/run-tests.sh tests/e2e/*.bats
