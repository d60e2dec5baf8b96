#!/usr/bin/env bash
# The README's first command, `make demo`, as a newcomer runs it on Debian: a copy of
# this tree (committed or not, ignored files left out), the system's own Python, no
# virtual environment, no HEALTHWATCH_* settings. Passes when the demo prints its
# sign-in line, the dashboard and the API answer, and Ctrl-C stops it cleanly.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
# Installing the runtime packages takes a minute or two with an empty pip cache.
deadline_s="${FIRST_RUN_TIMEOUT_S:-600}"

work="$(mktemp -d)"
demo_pid=""
cleanup() {
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then kill -KILL -- "-$demo_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

copy="$work/healthwatch"
mkdir -p "$copy"
(cd "$here" && git ls-files --cached --others --exclude-standard -z) |
  while IFS= read -r -d '' f; do [ -e "$here/$f" ] && printf '%s\0' "$f"; done |
  tar -C "$here" --null -T - -cf - | tar -C "$copy" -xf -

# Debian's PATH, so `python3` is the system's (externally managed) Python when there is one.
path="/usr/local/bin:/usr/bin:/bin"
PATH="$path" command -v python3 >/dev/null || path="$PATH"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
echo "first run: make demo in a copy of this tree with $(PATH="$path" command -v python3) ($(PATH="$path" python3 -V 2>&1)), port $port"

log="$work/demo.log"
(cd "$copy" && exec setsid env -i HOME="$HOME" PATH="$path" LANG=C.UTF-8 \
  HEALTHWATCH_INGEST_PORT="$port" make demo) >"$log" 2>&1 &
demo_pid=$!

fail() {
  echo "first run FAILED: $1; the last lines of make demo:" >&2
  tail -n 40 "$log" >&2
  exit 1
}
url="http://127.0.0.1:$port"
# GET with an optional bearer key; fails on anything but a 2xx. Python, not curl: the
# README asks a newcomer for make, git and Python only, and a fresh Debian has no curl.
get() {
  python3 -c 'import sys, urllib.request as u
r = u.Request(sys.argv[1], headers={"Authorization": "Bearer " + sys.argv[2]} if sys.argv[2] else {})
u.urlopen(r, timeout=10).read()' "$1" "${2:-}" 2>/dev/null
}
start=$SECONDS
until grep -q "Sign in at $url/ui/ with key hwk_" "$log" && get "$url/readyz"; do
  kill -0 "$demo_pid" 2>/dev/null || fail "make demo ended by itself"
  [ $((SECONDS - start)) -lt "$deadline_s" ] || fail "not ready after ${deadline_s}s"
  sleep 2
done
key="$(grep -o 'hwk_[A-Za-z0-9_-]*' "$log" | head -n 1)"
get "$url/ui/login" || fail "the dashboard's sign-in page did not answer"
get "$url/v1/accounts" "$key" ||
  fail "the printed sign-in key was refused by GET /v1/accounts"
grep -q "venv\|virtual environment" "$log" || fail "make demo did not say it uses a virtual environment"
echo "first run: ready after $((SECONDS - start))s; stopping it as Ctrl-C does"

kill -INT -- "-$demo_pid"
for _ in $(seq 1 30); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 1; done
kill -0 "$demo_pid" 2>/dev/null && fail "make demo did not stop within 30s of Ctrl-C"
if grep -q "Traceback" "$log"; then fail "make demo printed a traceback"; fi
echo "first run: passed"
