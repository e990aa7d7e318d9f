#!/usr/bin/env bash
# test_install.sh -- an outside author can build a plugin against an installed
# kiln, and the installed kiln runs it.
#
#   bash test_install.sh SOURCE_DIR BUILD_DIR
#
# Installs BUILD_DIR into a temporary prefix, copies examples/outoftree out of
# the tree, builds it twice against the installed files only (find_package and
# pkg-config), then runs `kiln plugins` and `kiln run` from the prefix.
set -euo pipefail

src=$(cd "${1:?usage: test_install.sh SOURCE_DIR BUILD_DIR}" && pwd)
build=$(cd "${2:?usage: test_install.sh SOURCE_DIR BUILD_DIR}" && pwd)
cmake=${CMAKE:-cmake}

tmp=$(mktemp -d /tmp/kiln-test-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# Children run as an unprivileged uid when kiln runs as root: they must be
# able to read the plugins, as in any real install.
chmod 0755 "$tmp"
prefix=$tmp/prefix
step() { printf '== %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

step "cmake --install into $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" || {
    cat "$tmp/install.log" >&2
    fail "cmake --install failed"
}
libdir=$(cd "$prefix" && dirname "$(find . -path '*/pkgconfig/kiln.pc' | head -n 1)")
libdir=${libdir%/pkgconfig}
libdir=${libdir#./}
[ -n "$libdir" ] || fail "no kiln.pc installed under $prefix"
for f in bin/kiln include/kiln/kiln.h "$libdir/pkgconfig/kiln.pc" \
    "$libdir/cmake/kiln/kilnConfig.cmake" "$libdir/cmake/kiln/kilnConfigVersion.cmake" \
    "$libdir/cmake/kiln/kilnTargets.cmake" "$libdir/kiln/plugins/hello.so" \
    share/doc/kiln/GUIDE.md; do
    [ -e "$prefix/$f" ] || fail "not installed: $f"
done
# The guide shows examples/hello/hello.c verbatim; keep the two in step.
python3 - "$src/examples/hello/hello.c" "$prefix/share/doc/kiln/GUIDE.md" <<'PY' ||
import sys
hello, guide = (open(p).read() for p in sys.argv[1:3])
sys.exit(0 if hello in guide else 1)
PY
    fail "share/doc/kiln/GUIDE.md no longer shows examples/hello/hello.c verbatim: update sdk/GUIDE.md"
if find "$prefix" -name 'hostile*' | grep -q .; then
    fail "a hostile test plugin was installed: $(find "$prefix" -name 'hostile*')"
fi

# The author has only their own directory; the kiln source tree is not on
# any include path.
cp -r "$src/examples/outoftree" "$tmp/wordcount"
rm -rf "$tmp/wordcount/build" "$tmp/wordcount/wordcount.so"

step "pkg-config --cflags --libs kiln"
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
cflags=$(pkg-config --cflags kiln)
libs=$(pkg-config --libs kiln)
plugindir=$(pkg-config --variable=plugindir kiln)
echo "cflags: $cflags"
echo "libs: $libs"
echo "plugindir: $plugindir"
case " $cflags " in
*" -I$prefix/include "*) ;;
*) fail "pkg-config --cflags kiln does not name $prefix/include: $cflags" ;;
esac
[ "$plugindir" = "$prefix/$libdir/kiln/plugins" ] || fail "plugindir is $plugindir"
case " $libs " in
*" -ljansson "*) ;;
*) fail "pkg-config --libs kiln does not bring jansson: $libs" ;;
esac
case " $libs " in
*kiln*) fail "pkg-config --libs kiln names a kiln library; plugins link none: $libs" ;;
esac

step "build with make + pkg-config"
make -C "$tmp/wordcount" >"$tmp/make.log" 2>&1 || {
    cat "$tmp/make.log" >&2
    fail "make failed"
}
cat "$tmp/make.log"
mkdir -p "$tmp/plugins-make"
mv "$tmp/wordcount/wordcount.so" "$tmp/plugins-make/"

step "build with cmake + find_package(kiln)"
if ! { "$cmake" -S "$tmp/wordcount" -B "$tmp/wordcount/build" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON && "$cmake" --build "$tmp/wordcount/build"; } \
    >"$tmp/cmake.log" 2>&1; then
    cat "$tmp/cmake.log" >&2
    fail "cmake build failed"
fi
grep -q -- "$prefix/include" "$tmp/wordcount/build/compile_commands.json" ||
    fail "the cmake build did not use $prefix/include: $(cat "$tmp/wordcount/build/compile_commands.json")"
grep -q -- "-fvisibility=hidden" "$tmp/wordcount/build/compile_commands.json" ||
    fail "kiln_add_plugin() did not build with -fvisibility=hidden"
mkdir -p "$tmp/plugins-cmake"
cp "$tmp/wordcount/build/wordcount.so" "$tmp/plugins-cmake/"

for how in make cmake; do
    so=$tmp/plugins-$how/wordcount.so
    exported=$(nm -D --defined-only "$so" | awk '$2 ~ /^[A-Z]$/ && $2 != "A" {print $3}' | sort | tr '\n' ' ')
    [ "$exported" = "kiln_plugin " ] ||
        fail "$how build exports more than kiln_plugin (is -fvisibility=hidden on?): $exported"
done

# Normalise JSON so that kiln's formatting does not matter.
json() { python3 -c 'import json,sys; print(json.dumps(json.loads(sys.stdin.read()), sort_keys=True))'; }
expect_json() { # expect_json WANT CMD...
    local want=$1 got rc=0
    shift
    echo "\$ $*"
    got=$("$@" 2>"$tmp/stderr") || rc=$?
    if [ "$rc" -ne 0 ]; then
        cat "$tmp/stderr" >&2
        fail "exit $rc: $*"
    fi
    echo "$got"
    got=$(printf '%s' "$got" | json) || fail "not JSON on stdout: $got"
    want=$(printf '%s' "$want" | json)
    [ "$got" = "$want" ] || fail "$*: got $got, want $want"
}

printf 'one two three\nfour fivefive\n' >"$tmp/input.txt"
for how in make cmake; do
    step "kiln plugins + kiln run ($how build)"
    out=$("$prefix/bin/kiln" plugins "$tmp/plugins-$how" 2>&1) || fail "kiln plugins exited non-zero: $out"
    echo "$out"
    for want in wordcount wordcount.text wordcount.file; do
        grep -q -- "$want" <<<"$out" || fail "kiln plugins does not list $want"
    done
    so=$tmp/plugins-$how/wordcount.so
    expect_json '{"words": 3, "lines": 0, "bytes": 13}' \
        "$prefix/bin/kiln" run "$so" wordcount.text --args '["one two three"]'
    expect_json '{"words": 1, "lines": 0, "bytes": 13}' \
        "$prefix/bin/kiln" run "$so" wordcount.text --args '["one two three"]' --kwargs '{"min_length": 4}'
    expect_json '{"words": 5, "lines": 2, "bytes": 28}' \
        "$prefix/bin/kiln" run "$so" wordcount.file --root "$tmp" --file input="$tmp/input.txt"
    if "$prefix/bin/kiln" run "$so" wordcount.text --args '[42]' >"$tmp/stdout" 2>"$tmp/stderr"; then
        fail "wordcount.text with a number succeeded: $(cat "$tmp/stdout")"
    fi
    grep -q TypeError "$tmp/stderr" || fail "wordcount.text [42]: no TypeError on stderr: $(cat "$tmp/stderr")"
done

step "bundled plugins run from the prefix"
expect_json '[1, "two"]' "$prefix/bin/kiln" run "$prefix/$libdir/kiln/plugins/hello.so" hello.echo --args '[1, "two"]'

echo "ok: installed kiln builds and runs an out-of-tree plugin (make and cmake)"
