# dbm - zero-downtime PostgreSQL migration toolkit
PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR     = $(PREFIX)/bin
MANDIR     = $(PREFIX)/share/man/man1
DATADIR    = $(PREFIX)/share/dbm

CC        ?= cc
PKGS       = libpq libxxhash jansson rdkafka
CFLAGS    ?= -O2 -g
CFLAGS    += -std=c11 -Wall -Wextra -Werror -pthread -Ilib \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS    += $(shell pkg-config --libs $(PKGS) 2>/dev/null || echo -lpq -lxxhash -ljansson -lrdkafka) -pthread

B          = build
TOOLS      = dbm-hash dbm-diff dbm-snapshot dbm-cdc-apply dbm-freeze dbm-switch dbm-rollback
LIB_SRC    = $(wildcard lib/*.c)
LIB_OBJ    = $(LIB_SRC:lib/%.c=$(B)/lib/%.o)
BINS       = $(TOOLS:%=$(B)/%)
MANS       = $(TOOLS:%=docs/man/%.1)

.PHONY: all test unit demo bench bench-hash bench-snapshot bench-apply bench-cutover bench-debezium bench-e2e \
        install man clean setup

all: $(BINS) $(B)/unit-tests $(B)/kafka-mock

$(B)/lib/%.o: lib/%.c lib/*.h | $(B)/lib
	$(CC) $(CFLAGS) -c -o $@ $<

$(B)/libdbm.a: $(LIB_OBJ)
	$(AR) rcs $@ $^

$(B)/dbm-%: tools/dbm-%.c $(B)/libdbm.a lib/*.h
	$(CC) $(CFLAGS) -o $@ $< $(B)/libdbm.a $(LDLIBS)

$(B)/unit-tests: tests/unit/*.c tests/unit/*.h $(B)/libdbm.a
	$(CC) $(CFLAGS) -Itests/unit -o $@ tests/unit/*.c $(B)/libdbm.a $(LDLIBS)

# a Kafka protocol peer for the tests (librdkafka's mock cluster)
$(B)/kafka-mock: tests/helpers/kafka-mock.c | $(B)/lib
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

$(B)/lib:
	mkdir -p $@

setup:
	@scripts/setup.sh

# every tier: unit tests, the bats suites on real PostgreSQL, pgbouncer and
# librdkafka's mock cluster, then the end-to-end tier (real Kafka and
# Debezium from Maven Central, cached after the first run)
test:
	@scripts/setup.sh --e2e
	@$(MAKE) --no-print-directory all
	@scripts/run-tests.sh

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
	rm -rf $(B)

# the end-to-end tier: a real Kafka broker and Debezium's connector on Kafka
# Connect, fetched from Maven Central and cached (scripts/e2e-kafka.sh)
.PHONY: test-e2e
test-e2e:
	@scripts/setup.sh --e2e
	@$(MAKE) --no-print-directory all
	@scripts/run-tests.sh tests/e2e/*.bats
