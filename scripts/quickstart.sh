#!/usr/bin/env bash
# quickstart.sh -- set up a fresh Debian bookworm machine (as root), build
# kiln in build/, then
#
#   bash scripts/quickstart.sh demo   run tasks with `kiln run`, some of them
#                                     contained by the sandbox, and say what happened
#   bash scripts/quickstart.sh test   the whole suite: -Werror build + ctest, an
#                                     ASan/UBSan build (clang) running every test
#                                     again, then each fuzzer for a while
#                                     (.ci/run runs exactly this)
#
# Environment:
#   KILN_SKIP_LABELS    ctest label regex to leave out (ctest -LE), e.g. "slow"
#   KILN_FUZZ_SECONDS   how long each fuzzer runs in `test` (default 30)
set -Eeuo pipefail
trap 'rc=$?; printf "quickstart: failed (exit %d): %s\n" "$rc" "$BASH_COMMAND" >&2' ERR

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian packages kiln builds and tests with.  Add to this list, nowhere else.
APT_PACKAGES=(
    build-essential cmake pkg-config
    libuv1-dev libhiredis-dev libjansson-dev libseccomp-dev zlib1g-dev # kiln itself
    libcmocka-dev                                           # C unit tests
    redis-server python3-celery python3-redis               # integration tests
    clang libclang-rt-14-dev                                # sanitizers and libFuzzer
    libvips-dev libavformat-dev libavcodec-dev libswscale-dev       # media plugins
    libswresample-dev libavutil-dev
    imagemagick ffmpeg libvips-tools                        # media tests and benchmarks
    python3-fastapi uvicorn python3-multipart python3-httpx # FastAPI example
)

JOBS=$(nproc)
SKIP_LABELS=${KILN_SKIP_LABELS:-}
FUZZ_SECONDS=${KILN_FUZZ_SECONDS:-30}

say() { printf '\n== %s\n' "$*"; }
die() {
    printf 'quickstart: %s\n' "$*" >&2
    exit 1
}

install_packages() {
    local p missing=()
    for p in "${APT_PACKAGES[@]}"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        say "Debian packages: all ${#APT_PACKAGES[@]} present"
        return
    fi
    say "Debian packages: installing ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || die "not root: run as root, or first: sudo apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
}

# build DIR [cmake options...]
build() {
    local dir=$1
    shift
    say "build: $dir $*"
    cmake -S . -B "$dir" "$@" && cmake --build "$dir" -j "$JOBS"
}

# ---- demo -------------------------------------------------------------------

# Hostile plugins from tests/hostile shown by the demo when built: "plugin|task|what".
HOSTILE_DEMOS=(
    "hostile_fork_bomb|fork_bomb.run|a fork bomb"
    "hostile_malloc_bomb|malloc_bomb.run|a handler that mallocs and touches 8 GB"
    "hostile_open_shadow|open_shadow.run|a handler that opens /etc/shadow"
)

# show CMD...: print the command, run it, keep its exit status and stderr.
show() {
    local w line="$"
    for w in "$@"; do
        case $w in
        *[!A-Za-z0-9_./=:,-]*) w="'${w//\'/\'\\\'\'}'" ;;
        esac
        line+=" $w"
    done
    printf '%s\n' "$line"
    local start=${EPOCHREALTIME/./} us
    rc=0
    "$@" 2>"$demo_tmp/stderr" || rc=$?
    us=$((${EPOCHREALTIME/./} - start))
    elapsed=$((us / 1000000)).$((us % 1000000 / 100000))
    sed 's/^/  stderr: /' "$demo_tmp/stderr"
}

demo() {
    local kiln=build/kiln hello=build/plugins/hello.so so task what d contained=1
    demo_tmp=$(mktemp -d /tmp/kiln-demo.XXXXXX)
    trap 'rm -rf "$demo_tmp"' EXIT

    say "What the sandbox can do on this machine"
    show "$kiln" sandbox-check
    [ "$rc" -eq 0 ] || die "kiln sandbox-check exited $rc"

    say "A task that succeeds"
    show "$kiln" run "$hello" hello.echo --args '[1,"two"]'
    [ "$rc" -eq 0 ] || die "hello.echo exited $rc"
    echo "-> ok: hello.echo returned its arguments as JSON on stdout"

    say "A task that fails on purpose"
    show "$kiln" run "$hello" hello.fail --args '["no such user"]'
    [ "$rc" -eq 1 ] || die "hello.fail exited $rc, not 1 (task failed)"
    echo "-> failed as asked (exit 1): the error type and message are on stderr"

    say "A handler that overruns its hard time limit"
    show "$kiln" run "$hello" hello.sleep --time-limit 1 --args '[5]'
    [ "$rc" -eq 1 ] || die "hello.sleep --time-limit 1 exited $rc, not 1: the hard limit did not hold"
    echo "-> contained: hello.sleep wanted 5 s; its child was killed at the 1 s hard time limit" \
        "(kiln exited 1 after ${elapsed} s)"

    for d in "${HOSTILE_DEMOS[@]}"; do
        IFS='|' read -r so task what <<<"$d"
        so=build/plugins/$so.so
        [ -e "$so" ] || continue
        say "A hostile handler: $what"
        show "$kiln" run "$so" "$task"
        [ "$rc" -eq 1 ] || die "$task exited $rc, not 1 (task failed): $what was not contained"
        echo "-> contained: $what failed only its own task, with the cause above" \
            "(kiln exited 1 after ${elapsed} s)"
        contained=$((contained + 1))
    done

    say "The next task runs normally"
    show "$kiln" run "$hello" hello.echo --args '["still here"]'
    [ "$rc" -eq 0 ] || die "hello.echo after the contained tasks exited $rc"

    media_demo
    worker_demo
    say "demo done: kiln run: 2 tasks succeeded, 1 failed as asked, $contained were contained;" \
        "an image was thumbnailed and a decompression bomb refused;" \
        "kiln worker served a plain Celery client and contained a hostile task"
}

# The image plugin on a real JPEG made by ImageMagick, and on a PNG whose
# header claims 100000x100000 pixels (a decompression bomb).
media_demo() {
    local dir=$demo_tmp/media image=build/plugins/image.so
    [ -e "$image" ] || die "build/plugins/image.so was not built (libvips-dev missing?)"
    mkdir -p "$dir"
    chmod 755 "$demo_tmp" "$dir"
    /usr/bin/convert -size 1600x1200 plasma:fractal "$dir/photo.jpg"
    say "image.thumbnail of a 1600x1200 JPEG made by ImageMagick"
    show build/kiln run "$image" image.thumbnail --root "$dir" --file input="$dir/photo.jpg" \
        --out output="$dir/thumb.jpg" --kwargs '{"width": 256}'
    [ "$rc" -eq 0 ] || die "image.thumbnail exited $rc"
    echo "-> ok: $(identify -format '%m %wx%h' "$dir/thumb.jpg") in $dir/thumb.jpg" \
        "(kiln exited 0 after ${elapsed} s)"
    /usr/bin/python3 - "$dir/bomb.png" <<'PY'
import struct, sys, zlib
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
idat = zlib.compress(b"\0" + b"\0" * 300)
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                              + chunk(b"IEND", b""))
PY
    say "image.thumbnail of a PNG whose header claims 100000x100000 pixels"
    show build/kiln run "$image" image.thumbnail --root "$dir" --file input="$dir/bomb.png" \
        --out output="$dir/bomb-thumb.jpg" --kwargs '{"width": 256}'
    [ "$rc" -eq 1 ] || die "the decompression bomb exited $rc, not 1 (task failed)"
    grep -q DecompressionBombError "$demo_tmp/stderr" || die "the bomb was not refused as one"
    echo "-> refused from its header before any decoding (kiln exited 1 after ${elapsed} s)"
}

# The worker: a plain Python Celery client sends tasks to a real redis-server,
# kiln runs them in sandboxed children, Celery reads the results.
worker_demo() {
    local dir=$demo_tmp/worker kiln_pid redis_pid i
    say "kiln worker behind a plain Celery client"
    mkdir -p "$dir/plugins"
    chmod 755 "$demo_tmp" "$dir" "$dir/plugins"
    cp build/plugins/hello.so "$dir/plugins/"
    [ -e build/plugins/hostile_malloc_bomb.so ] && cp build/plugins/hostile_malloc_bomb.so "$dir/plugins/"
    cat >"$dir/kiln.json" <<JSON
{"poison_deaths": 3, "tasks": {"malloc_bomb.run": {"retry_backoff": 0.2, "max_retries": 5}}}
JSON
    redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 --save '' \
        --appendonly no --maxmemory-policy noeviction --daemonize no --logfile "$dir/redis.log" &
    redis_pid=$!
    # The socket file exists from bind(), before listen(): wait for an answer.
    for i in $(seq 50); do redis-cli -s "$dir/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.1; done
    echo "\$ kiln worker --broker redis+socket://$dir/redis.sock --plugins $dir/plugins --config $dir/kiln.json &"
    build/kiln worker --broker "redis+socket://$dir/redis.sock" --plugins "$dir/plugins" \
        --config "$dir/kiln.json" 2>"$dir/worker.log" &
    kiln_pid=$!
    echo "\$ python3 examples/celery/demo.py redis+socket://$dir/redis.sock"
    rc=0
    /usr/bin/python3 examples/celery/demo.py "redis+socket://$dir/redis.sock" || rc=$?
    echo "worker log (warnings only):"
    sed 's/^/  /' "$dir/worker.log"
    kill -TERM "$kiln_pid"
    wait "$kiln_pid" || die "kiln worker did not stop cleanly on SIGTERM"
    kill -TERM "$redis_pid"
    wait "$redis_pid" || true
    [ "$rc" -eq 0 ] || die "the Celery client demo failed (exit $rc)"
    echo "-> a Celery client got values and exceptions from kiln; the hostile task killed only" \
        "its own children (memory cap), was retried, then dead-lettered; the worker went on"
}

# ---- test -------------------------------------------------------------------

summary=()
total_passed=0
total_failed=0
builds_failed=0

# run_ctest NAME DIR [ctest options...]: run, tally from ctest's summary line.
run_ctest() {
    local name=$1 dir=$2 log line n bad rc=0
    shift 2
    log=$dir/quickstart-ctest.log
    say "ctest: $name"
    if [ -n "$SKIP_LABELS" ]; then
        set -- "$@" -LE "$SKIP_LABELS"
    fi
    ctest --test-dir "$dir" --output-on-failure --no-tests=ignore -j "$JOBS" "$@" 2>&1 |
        tee "$log" || rc=$?
    line=$(grep -E '[0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
    if [ -n "$line" ]; then
        n=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
        bad=$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")
    elif [ "$rc" -eq 0 ]; then
        n=0 bad=0
    else
        n=1 bad=1 # ctest itself failed before running anything
    fi
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1 n=$((n + 1)) # e.g. a test not built: count the run as one failure
    fi
    total_passed=$((total_passed + n - bad))
    total_failed=$((total_failed + bad))
    if [ "$n" -eq 0 ]; then
        summary+=("$name: no tests matched")
    else
        summary+=("$name: $((n - bad))/$n passed")
    fi
}

# build_failed NAME: a build that failed counts as one failure; its tests did not run.
build_failed() {
    total_failed=$((total_failed + 1))
    builds_failed=$((builds_failed + 1))
    summary+=("$1: BUILD FAILED, its tests did not run")
}

# Does LeakSanitizer work here (it needs ptrace-like access to the process)?
lsan_works() {
    local d out="" ok=1
    d=$(mktemp -d /tmp/kiln-lsan.XXXXXX)
    printf '#include <stdlib.h>\nvoid *p;\nint main(void){ p = malloc(33); p = 0; return 0; }\n' >"$d/leak.c"
    if clang -fsanitize=address -g "$d/leak.c" -o "$d/leak" 2>/dev/null; then
        out=$(ASAN_OPTIONS=detect_leaks=1 "$d/leak" 2>&1 || true) # exits non-zero on the leak
    fi
    case $out in
    *"detected memory leaks"*) ok=0 ;;
    esac
    rm -rf "$d"
    return $ok
}

test_all() {
    local started=$SECONDS leaks=0
    if build build -DKILN_WERROR=ON; then
        run_ctest "build (-Werror)" build
    else
        build_failed "build (-Werror)"
    fi

    if lsan_works; then
        leaks=1
    else
        say "note: LeakSanitizer does not work here; ASan runs with detect_leaks=0"
    fi
    # handle_segv/handle_sigbus=0: a hostile child that segfaults must die by the
    # signal, as in a normal build; ASan's handler would try to symbolize from
    # inside the sandbox and hang until the hard time limit.
    export ASAN_OPTIONS="detect_leaks=$leaks:check_initialization_order=1:detect_stack_use_after_return=1:handle_segv=0:handle_sigbus=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    if CC=clang build build-asan -DKILN_SANITIZE=ON -DKILN_WERROR=ON -DKILN_FUZZ=ON \
        -DKILN_FUZZ_SECONDS="$FUZZ_SECONDS"; then
        run_ctest "build-asan (ASan+UBSan, every test but the fuzzers)" build-asan -LE fuzz
        run_ctest "fuzz (${FUZZ_SECONDS} s each)" build-asan -L fuzz
    else
        build_failed "build-asan (clang, ASan+UBSan, fuzzers)"
    fi

    say "summary ($((SECONDS - started)) s)"
    printf '  %s\n' "${summary[@]}"
    if [ "$builds_failed" -eq 0 ]; then
        echo "$total_passed passed, $total_failed failed"
    else
        echo "$total_passed passed, $total_failed failed ($builds_failed of them a build, whose tests did not run)"
    fi
    [ "$total_failed" -eq 0 ] || exit 1
}

case "${1:-}" in
demo)
    install_packages
    build build
    demo
    ;;
test)
    install_packages
    test_all
    ;;
*)
    echo "usage: bash scripts/quickstart.sh demo|test" >&2
    exit 2
    ;;
esac
