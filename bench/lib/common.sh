# shellcheck shell=bash
# Helpers of bench/run: processes it starts (and only those) and their cleanup, readiness
# polling, correctness checks before load, wrk runs with CPU accounting, JSON result lines.
# Sourced; expects $root, $bench, $work, $results, $RUNS, $DURATION, $WARMUP, $CONNECTIONS,
# $LOAD_CORE, $NICE.
# shellcheck disable=SC2154

say() { printf '\033[1mbench:\033[0m %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }
# newest PATH...: the last of the (glob-sorted, version-named) paths that exist, or nothing.
newest() { local p found=""; for p in "$@"; do [ -e "$p" ] && found=$p; done; echo "$found"; }
need() { command -v "$1" >/dev/null 2>&1 || die "missing $1: $2"; }

now() { date +%s.%N; }
secs() { python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.3f}")' "$1" "$2"; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

declare -A PIDS=()
STARTED=()

# start_on NAME CORE CMD...: runs CMD pinned to CORE in the background, output in $work/NAME.log.
start_on() {
  local name=$1 core=$2; shift 2
  nice -n "$NICE" taskset -c "$core" "$@" >"$work/$name.log" 2>&1 &
  PIDS[$name]=$!
  STARTED+=("$name")
}

pid_of() { echo "${PIDS[$1]}"; }

# stop NAME...: TERM, then KILL after 5 s, of the processes this run started under those names.
stop() {
  local name pid i
  for name in "$@"; do
    pid=${PIDS[$name]:-}
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$name]"
  done
}

cleanup() {
  local i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop "${STARTED[$i]}"; done
  if [ -n "${work:-}" ] && [ -z "${BENCH_KEEP:-}" ]; then rm -rf "$work"; fi
}

# wait_http NAME URL: until URL answers 200 (30 s), or NAME exits; fails with NAME's log.
wait_http() {
  local name=$1 url=$2 i
  for i in $(seq 300); do
    kill -0 "${PIDS[$name]}" 2>/dev/null || { tail -20 "$work/$name.log" >&2; die "$name exited"; }
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  tail -20 "$work/$name.log" >&2
  die "$name not answering $url after 30 s"
}

# check_body URL SIZE: 200 with exactly SIZE bytes (identity: no Accept-Encoding, as wrk).
check_body() {
  local got
  got=$(curl -fsS --max-time 5 -o /dev/null -w '%{http_code} %{size_download}' "$1") || die "GET $1 failed"
  [ "$got" = "200 $2" ] || die "GET $1: expected 200 with $2 bytes, got $got"
}

# check_text URL TEXT [CURL ARGS]: 200 whose body is TEXT (and a newline).
check_text() {
  local url=$1 text=$2 got; shift 2
  got=$(curl -fsS --max-time 5 "$@" "$url") || die "GET $url failed"
  [ "$got" = "$text" ] || die "GET $url: expected body \"$text\", got \"$got\""
}

# cpu_ticks PID: user+system clock ticks of PID and its children (nginx workers), so far.
cpu_ticks() {
  local pid total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/stat" ] || continue
    # Fields 14 and 15 (utime, stime) follow the ")" closing the command name.
    total=$((total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$total"
}

# wrk_once URL HEADER SECONDS: one wrk run from LOAD_CORE; prints the script's JSON line.
# WRK_SCRIPT replaces the GET-and-report script (row 4 POSTs); every run's request count is
# also appended to $work/wrk-requests (row 4 cross-checks it against the stream).
wrk_once() {
  local url=$1 header=$2 seconds=$3 args=() output line
  [ -n "$header" ] && args=(-H "$header")
  output=$(BENCH_LIB="$bench/lib" nice -n "$NICE" taskset -c "$LOAD_CORE" wrk -t1 -c"$CONNECTIONS" -d"${seconds}s" --latency \
    -s "${WRK_SCRIPT:-$bench/lib/wrk-report.lua}" "${args[@]}" "$url" 2>&1) || { echo "$output" >&2; die "wrk $url failed"; }
  line=$(grep '^WRK ' <<<"$output" | cut -c5-) || { echo "$output" >&2; die "wrk printed no result for $url"; }
  python3 -c 'import json,sys; print(json.loads(sys.argv[1])["requests"])' "$line" >>"$work/wrk-requests"
  echo "$line"
}

# compare ROW CASE SPEC...: each SPEC is "label|url|process names whose CPU to record|header".
# One warm-up per target, then RUNS rounds, the targets interleaved within each round so slow
# drifts in machine load (other jobs on a shared box) hit every target alike.
compare() {
  local row=$1 case=$2; shift 2
  local spec label url names header run
  for spec in "$@"; do
    IFS='|' read -r label url names header <<<"$spec"
    say "  row $row $case: warm-up $label"
    wrk_once "$url" "$header" "$WARMUP" >/dev/null
  done
  for run in $(seq "$RUNS"); do
    for spec in "$@"; do
      IFS='|' read -r label url names header <<<"$spec"
      local before=() after=() n i json cpu="" errors
      read -ra n <<<"$names"
      for i in "${!n[@]}"; do before[i]=$(cpu_ticks "${PIDS[${n[i]}]}"); done
      json=$(wrk_once "$url" "$header" "$DURATION")
      for i in "${!n[@]}"; do after[i]=$(cpu_ticks "${PIDS[${n[i]}]}"); done
      for i in "${!n[@]}"; do
        cpu+="${cpu:+,}\"${n[i]}\":$(python3 -c 'import os,sys; print(round((int(sys.argv[2]) - int(sys.argv[1])) / os.sysconf("SC_CLK_TCK") / float(sys.argv[3]) * 100))' "${before[i]}" "${after[i]}" "$DURATION")"
      done
      errors=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["errors"])' "$json")
      [ "$errors" = 0 ] || die "row $row $case $label: $errors errors in $json (see $work/*.log)"
      say "  row $row $case run $run/$RUNS $label: $json cpu% {$cpu}"
      printf '{"kind":"http","row":%s,"case":"%s","target":"%s","run":%s,"conns":%s,"cpu_pct":{%s},"wrk":%s}\n' \
        "$row" "$case" "$label" "$run" "$CONNECTIONS" "$cpu" "$json" >>"$results"
    done
  done
}

# skip ROW WHY: the row is in the table as "not measured in this run", with the reason.
skip() {
  say "row $1: not measured: $2"
  python3 -c 'import json,sys; print(json.dumps({"kind": "skip", "row": int(sys.argv[1]), "why": sys.argv[2]}))' "$1" "$2" >>"$results"
}

# machine_facts: what the table must say about where and with what it ran.
machine_facts() {
  local commit dirty=""
  commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$root" diff --quiet HEAD 2>/dev/null || dirty=" (with uncommitted changes)"
  CPU="$(lscpu | awk -F': *' '/^Model name/ && !n++ {print $2}')" \
  CORES="$(nproc)" \
  MEM="$(free -g | awk '/^Mem:/ {print $2 " GiB"}')" \
  KERNEL="$(uname -sr)" \
  OS="$(. /etc/os-release && echo "$PRETTY_NAME")" \
  NGINX="$(nginx -v 2>&1 | sed 's/.*version: //')" \
  WRK="$(wrk --version 2>&1 | awk 'NR == 1 {print $2}')" \
  NODE="$(node --version)" \
  RUSTC="$(cd "$root" && rustc --version)" \
  COMMIT="$commit$dirty" \
  LOADAVG="$(cut -d' ' -f1-3 /proc/loadavg)" \
  DATE="$(date -u '+%Y-%m-%d %H:%M UTC')" \
  python3 -c 'import json, os; print(json.dumps({k.lower(): os.environ[k] for k in ["CPU","CORES","MEM","KERNEL","OS","NGINX","WRK","NODE","RUSTC","COMMIT","LOADAVG","DATE"]}))'
}
