#!/bin/bash
# Try the thumbnail service on one machine: a private redis-server on a unix
# socket, `kiln worker` with image.so and this directory's kiln.json (roots
# and plugins pointed at a temp directory), and uvicorn serving app.py on
# 127.0.0.1:$PORT.  Ctrl-C stops all three and removes the temp directory.
#
#   examples/fastapi/run.sh            # after building kiln into build/
#   KILN_BUILD=/path/to/build PORT=8080 examples/fastapi/run.sh
#
# kiln runs its children as unprivileged uids; start this as root (or give
# kiln what docs/ says it needs for sandboxing) as for any kiln worker.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${KILN_BUILD:-$here/../../build}
kiln=${KILN_BIN:-$build/kiln}
plugins=${KILN_PLUGINS:-$build/plugins}
port=${PORT:-8000}

die() {
    echo "run.sh: $*" >&2
    exit 1
}
[ -x "$kiln" ] || die "no kiln binary at $kiln (set KILN_BUILD or KILN_BIN)"
[ -f "$plugins/image.so" ] || die "no image.so in $plugins (set KILN_PLUGINS)"

dir=$(mktemp -d /tmp/kiln-fastapi.XXXXXX)
chmod 755 "$dir" # the sandboxed children read the plugin directory
mkdir -m 755 "$dir/media" "$dir/plugins"
cp "$plugins/image.so" "$dir/plugins/" # only the image plugin, readable by the children
chmod 755 "$dir/plugins/image.so"
/usr/bin/python3 - "$here/kiln.json" "$dir" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
cfg.pop("broker")  # KILN_BROKER_URL below, shared with the app
cfg["roots"] = [sys.argv[2] + "/media"]
cfg["plugins"] = sys.argv[2] + "/plugins"
json.dump(cfg, open(sys.argv[2] + "/kiln.json", "w"), indent=1)
EOF

pids=() # redis-server, kiln, uvicorn: stopped in the reverse order
cleanup() {
    trap - EXIT INT TERM
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

redis-server --port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700 --save "" \
    --dir "$dir" --logfile "$dir/redis.log" &
pids+=($!)
# The socket file exists from bind(), before listen(): wait for an answer.
for _ in $(seq 50); do redis-cli -s "$dir/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.1; done

export KILN_BROKER_URL="redis+socket://$dir/redis.sock"
export KILN_MEDIA_DIR="$dir/media"
"$kiln" worker --config "$dir/kiln.json" -v &
pids+=($!)
PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m uvicorn app:app --app-dir "$here" \
    --host 127.0.0.1 --port "$port" &
pids+=($!)

echo "run.sh: media in $dir/media; try"
echo "  curl -F file=@photo.jpg -F width=256 http://127.0.0.1:$port/images"
wait -n
