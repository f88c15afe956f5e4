#!/usr/bin/env bash
# A/B of batched UDP reads (limits.read_batch 1 against 32), see
# BENCHMARKS.md "Batched I/O": QoS 0 from 100 nodes at RATE msg/s (default
# 40000) for 5 s into a gateway with its embedded broker, twice each,
# alternating; prints delivery and the datagrams per read system call.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-40000}
WORK=$(mktemp -d /tmp/readbatch.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
go build -o "$WORK/gw" ./cmd/mqttsn-gateway
go build -o "$WORK/bench" ./cmd/mqttsn-bench
for round in 1 2; do
	for rb in 1 32; do
		GWP=$("$WORK/bench" freeport udp) BRP=$("$WORK/bench" freeport tcp) ADP=$("$WORK/bench" freeport tcp)
		printf 'listen:\n  udp: "127.0.0.1:%s"\nembedded_broker:\n  listen: "127.0.0.1:%s"\nadmin:\n  listen: "127.0.0.1:%s"\nlimits:\n  read_batch: %s\nlog:\n  level: warn\n' \
			"$GWP" "$BRP" "$ADP" "$rb" >"$WORK/gw.yaml"
		"$WORK/gw" --config "$WORK/gw.yaml" 2>"$WORK/gw.log" &
		PID=$!
		for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADP/readyz" >/dev/null && break; sleep 0.1; done
		"$WORK/bench" publish --gateway "127.0.0.1:$GWP" --broker "127.0.0.1:$BRP" --n 100 --qos 0 --rate "$RATE" --duration 5s --drain 3s 2>&1 |
			grep -E "^ *(delivered|lost)" | sed "s/^/read_batch=$rb /"
		curl -s "http://127.0.0.1:$ADP/metrics" | awk -v rb="$rb" '
			/^mqttsn_received_datagrams_total / {d=$2} /^mqttsn_udp_read_batches_total / {b=$2}
			END {if (b > 0) printf "read_batch=%s datagrams per read call: %.1f\n", rb, d/b; else printf "read_batch=%s datagrams per read call: 1\n", rb}'
		kill "$PID"
		wait "$PID" 2>/dev/null || true
	done
done
