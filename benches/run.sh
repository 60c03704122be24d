#!/usr/bin/env bash
# One command for the whole benchmark: installs its tools (wrk, nginx, perf) from Debian's
# packages when missing (and valgrind for `callgrind`), then runs `cargo bench --bench gateway` (release build).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v perf >/dev/null || need+=(linux-perf)
command -v valgrind >/dev/null || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
exec cargo bench --bench gateway -- "$@"
