#!/usr/bin/env bash
# A short, bounded fuzz run of every router target (default 30 s each), for the test command.
# Needs the nightly toolchain and cargo-fuzz (installed here from crates.io when missing).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${KPAGES_FUZZ_SECONDS:-30}"
if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
for target in path_normalize rule_matching; do
  mkdir -p "corpus/$target"  # grows during runs; seeds/ is committed
  echo "fuzz: $target for ${seconds}s"
  cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=2048
done
echo "fuzz: no crashes"
