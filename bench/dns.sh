#!/usr/bin/env bash
# Queries per second of the embedded DNS server with 10,000 users in the zone,
# next to knotd serving the same zone: now one workload of bench/run, which
# this runs alone (the table goes to ${TMPDIR:-/tmp}, not docs/).
#   bench/dns.sh [seconds]
set -euo pipefail
exec "$(dirname "$0")/run" --secs "${1:-10}" --runs 1 dns
