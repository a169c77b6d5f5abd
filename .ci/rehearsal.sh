#!/usr/bin/env bash
# CI: the short rehearsal (deploy/rehearsal/run.sh --short, about 3 minutes): the
# production shape on loopback (3 instances in the production profile behind haproxy, a
# 3-master Redis Cluster, a throwaway PostgreSQL, the WeChat stand-in) under a mixed load
# while each fault is injected; fails when an invariant breaks, or when the rolling restart
# or the hung Redis costs a client a failed request.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v redis-server >/dev/null || need+=(redis-server)
command -v curl >/dev/null || need+=(curl)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "rehearsal: installing ${need[*]}"
  as_root apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build-release
REHEARSAL_NO_BUILD=true timeout 900 deploy/rehearsal/run.sh --short
