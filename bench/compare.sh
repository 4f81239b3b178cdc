#!/usr/bin/env bash
# liberad against FreeRADIUS + rlm_sql (SQLite), side by side, in one run,
# with the same load generator and subscriber base; see BENCHMARKS.md.
#
#   bench/compare.sh                  liberad and FreeRADIUS (FreeRADIUS is
#                                     installed from Debian if missing)
#   bench/compare.sh --growth         also liberad at 10k, 100k and 1M logins
#                                     and 10k / 100k releases ending at once
#   bench/compare.sh --smoke          a few seconds, liberad only (CI)
#   bench/compare.sh --help           every option
#
# The server runs on core 0 and the generator on core 1 (taskset).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in taskset getconf; do
    command -v "$tool" >/dev/null || { echo "compare.sh: $tool is missing (util-linux, libc-bin)" >&2; exit 1; }
done

profile=release
for arg in "$@"; do
    [ "$arg" = "--smoke" ] && profile=debug
done
if [ "$profile" = release ]; then
    cargo build --locked --release --bins
else
    cargo build --locked --bins
fi
exec "target/$profile/liberad-bench" compare --bin-dir "target/$profile" "$@"
