# cairn — the two commands that matter:
#   make run    install what is missing, build, start `cairn serve` (defaults)
#   make test   install what is missing, build and run every test: release,
#               then ASan+UBSan, then the concurrency tests under TSan
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CTEST = ctest --output-on-failure -j$(JOBS)

.PHONY: all deps build build-asan build-tsan test test-release test-asan \
        test-tsan run bench clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	@cmake --preset release >/dev/null
	@cmake --build --preset release -j$(JOBS)

build-asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j$(JOBS)

build-tsan: deps
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j$(JOBS)

test-release: build
	cd build/release && $(CTEST)

test-asan: build-asan
	cd build/asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(CTEST)

test-tsan: build-tsan
	cd build/tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  $(CTEST) -L concurrency

test: test-release test-asan test-tsan
	@echo "make test: release, asan+ubsan and tsan suites passed"

run: build
	./build/release/cairn serve

bench: build
	./build/release/cairn bench

clean:
	rm -rf build
