#!/usr/bin/env bash
# Queries per second of the embedded DNS server with 10,000 users in the
# zone, measured by dnsperf on loopback (bounded: -l seconds). A first cut of
# bench/: the side-by-side comparison with knot is the benchmarks issue.
#   bench/dns.sh [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
command -v dnsperf >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf; }
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/pryv-tls" ./cmd/pryv-tls
free() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
dnsport=$(free); front=$(free); peer=$(free); client=$(free)
cat > "$work/cfg.yml" <<YML
http: {ip: 127.0.0.1, port: $front}
core: {id: core1, ip: 127.0.0.10}
dns: {active: true, domain: mc.example.com, ip: 127.0.0.1, port: $dnsport}
letsEncrypt: {atRestKey: '$("$work/pryv-tls" keygen)'}
platformDB: {peerAddress: 127.0.0.1:$peer, clientAddress: 127.0.0.1:$client}
YML
(cd "$work" && exec ./pryv-tls serve --config cfg.yml --log-level warn) & pid=$!
for _ in $(seq 100); do [ -S "$work/var-pryv/run/pryv-tls.sock" ] && break; sleep 0.1; done
go run ./bench/dnsload -socket "$work/var-pryv/run/pryv-tls.sock" -users 10000 -queries "$work/queries.txt"
sleep 1
rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
dnsperf -s 127.0.0.1 -p "$dnsport" -d "$work/queries.txt" -l "$secs" -c 4 -q 200 | grep -E "Queries sent|Queries completed|Queries per second|Average Latency|Latency StdDev"
echo "pryv-tls RSS after the run: $(awk '/VmRSS/{print $2}' /proc/$pid/status) kB (before: $rss kB)"
