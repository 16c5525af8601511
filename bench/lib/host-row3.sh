#!/usr/bin/env bash
# Row 3 alone, without Rust: the Node function host's hello-world vs bare node:http, measured
# exactly as bench/run's row 3 (same compare(), same pinning, same report), but the host loads
# the hello function's source directly instead of the bundle `kpages build` makes of it (the
# bundle of a dependency-free module is the same code). For iterating on runtime/ performance
# without release builds; the committed figures still come from bench/run 3.
#
#   bench/lib/host-row3.sh [--quick] [--out FILE]
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
bench="$root/bench"
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$bench/lib/common.sh"

RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-8}
WARMUP=${BENCH_WARMUP:-2}
CONNECTIONS=${BENCH_CONNECTIONS:-50}
SERVER_CORE=${BENCH_SERVER_CORE:-0}
LOAD_CORE=${BENCH_LOAD_CORE:-1}
NICE=${BENCH_NICE:--10}
out=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) RUNS=1; DURATION=3; WARMUP=1; shift ;;
    --out) out=$2; shift 2 ;;
    *) die "unknown argument $1 (flags: --quick, --out FILE)" ;;
  esac
done
need wrk "apt-get install -y wrk"
need taskset "apt-get install -y util-linux"

work=$(mktemp -d /tmp/kpages-bench-row3.XXXXXX)
results="$work/results.jsonl"
: >"$results"
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/fn/hello"
cat >"$work/fn/hello/hello.mjs" <<'FN'
export default async () =>
  new Response('hello, world\n', { headers: { 'content-type': 'text/plain; charset=utf-8' } });
export const config = { path: '/api/hello' };
FN
cat >"$work/fn/functions.json" <<'JSON'
{"functions":[{"name":"hello","file":"hello/hello.mjs","dialect":"netlify","catchAll":null}]}
JSON

machine_facts >"$work/meta.json"
host=$(free_port)
CONTEXT=production start_on host-direct "$SERVER_CORE" node "$root/runtime/src/host.mjs" \
  --functions "$work/fn/functions.json" --port "$host" --host 127.0.0.1
wait_http host-direct "http://127.0.0.1:$host/.kpages/ready"
bare=$(free_port)
start_on bare-node "$SERVER_CORE" node "$bench/lib/bare-node.mjs" "$bare"
wait_http bare-node "http://127.0.0.1:$bare/"
check_text "http://127.0.0.1:$host/api/hello" "hello, world" -H "x-kpages-function: hello"
check_text "http://127.0.0.1:$bare/" "hello, world"
compare 3 "hello world" \
  "kpages host|http://127.0.0.1:$host/api/hello|host-direct|x-kpages-function: hello" \
  "bare node|http://127.0.0.1:$bare/|bare-node|"
stop host-direct bare-node

report=$(python3 "$bench/lib/report.py" "$work/meta.json" "$results" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "runs=$RUNS duration=${DURATION}s warmup=${WARMUP}s connections=$CONNECTIONS (host-row3.sh: unbundled hello)")
if [ -n "$out" ]; then printf '%s\n' "$report" >"$out"; cp "$results" "${out%.md}.jsonl"; fi
# The lines that matter when iterating: the row 3 verdict and each target's medians.
grep -E '^\| 3 \|' <<<"$report"
