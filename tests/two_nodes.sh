#!/usr/bin/env bash
# Two `ferry node` processes on loopback, links over mutual TLS:
#   1. initial sync of a disk with data and holes, then fio (nbd engine, crc32c verify)
#      through the source's splitter; the target's view at the last marker equals the source
#      (qemu-img compare);
#   2. a proxy cuts the link again and again while a client writes: the link resumes each
#      time, never copies the volume again, and the target ends equal to the source;
#   3. kill -9 of either node at random moments (FERRY_KILL_SEEDS, default 20) while a
#      client writes numbered blocks: after restart the link resumes (no second initial
#      sync), every write the client saw acknowledged is in the target's recovery point, and
#      that point equals the source.
# Usage: two_nodes.sh FERRY_BINARY
set -euo pipefail
ferry=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3  # Debian's, which has the nbd module
"$py" -c 'import nbd' 2>/dev/null || { echo "FAIL: python3-libnbd is missing (run tools/install-deps)" >&2; exit 1; }
seeds=${FERRY_KILL_SEEDS:-20}
work=$(mktemp -d /tmp/ferry-nodes.XXXXXX)
NODES="a b"
# shellcheck source=lib/nodes.sh
source "$here/lib/nodes.sh"

start_node a
start_node b

# 1. Initial sync of a disk that already holds data (and holes), then fio through the splitter.
truncate -s 128M "$work/disk0.img"
dd if=/dev/urandom of="$work/disk0.img" bs=1M count=8 conv=notrunc status=none
dd if=/dev/urandom of="$work/disk0.img" bs=1M count=4 seek=64 conv=notrunc status=none
api a POST /v1/volumes "{\"name\": \"disk0\", \"disk\": \"$work/disk0.img\"}" >/dev/null
proxy_port=$(free_port)
"$py" "$here/tools/cutting_proxy.py" "$proxy_port" 127.0.0.1 "${link_port[b]}" 0 0 1 >"$work/proxy.log" 2>&1 &
proxy=$!
for _ in $(seq 100); do grep -q 'proxy ready' "$work/proxy.log" && break; sleep 0.05; done
api a POST /v1/volumes/disk0/protect "{\"target\": \"127.0.0.1:$proxy_port\", \"marker_interval_ms\": 1000}" >/dev/null
for _ in $(seq 600); do
  [[ $(sync_finishes) -ge 1 ]] && break
  sleep 0.05
done
[[ $(sync_finishes) -eq 1 ]] || fail "initial sync did not finish: $(api b GET /v1/status)"
fio --name=two --ioengine=nbd --uri="$src_uri" --rw=randwrite --bs=4k --iodepth=16 --size=32m \
    --offset=16m --verify=crc32c --randseed=5 --verify_state_save=0 --directory="$work" \
    >"$work/fio.log" 2>&1 || fail "fio through the source splitter: $(cat "$work/fio.log")"
seq=$(mark after-fio)
wait_acked "$seq"
compare_at "$seq"
fio --name=two --ioengine=nbd --uri="$(tgt_uri "$seq")" --rw=randwrite --bs=4k --iodepth=16 --size=32m \
    --offset=16m --verify=crc32c --randseed=5 --verify_state_save=0 --verify_only --directory="$work" \
    >"$work/fio2.log" 2>&1 || fail "fio verify on the target's recovery point: $(cat "$work/fio2.log")"
echo "initial sync and fio: target at seq $seq equals the source; fio verified it"

# 2. Network cuts: the proxy drops the link every 0.2-1.0 s while a client writes.
kill -KILL "$proxy"; wait "$proxy" 2>/dev/null || true
"$py" "$here/tools/cutting_proxy.py" "$proxy_port" 127.0.0.1 "${link_port[b]}" 0.2 1.0 7 >"$work/proxy.log" 2>&1 &
proxy=$!
connects_before=$(api a GET /v1/status | json 'j["volumes"][0]["link"]["connects"]')
"$py" "$here/tools/numbered_writer.py" "$src_uri" 4096 99 "$work/cut-writes.log" 15000 2>"$work/cut-writer.err" ||
  fail "writer: $(cat "$work/cut-writer.err")"
sleep 1
kill -KILL "$proxy"; wait "$proxy" 2>/dev/null || true
cuts=$(grep -c '^cut' "$work/proxy.log" || true)
"$py" "$here/tools/cutting_proxy.py" "$proxy_port" 127.0.0.1 "${link_port[b]}" 0 0 1 >"$work/proxy.log" 2>&1 &
proxy=$!
seq=$(mark after-cuts)
wait_acked "$seq"
"$py" "$here/tools/numbered_writer.py" check "$(tgt_uri "$seq")" 4096 99 "$work/cut-writes.log" >/dev/null ||
  fail "acknowledged writes missing at the target after network cuts"
compare_at "$seq"
connects=$(api a GET /v1/status | json 'j["volumes"][0]["link"]["connects"]')
((cuts >= 2)) || fail "the proxy cut only $cuts times; the test did not test anything"
((connects - connects_before >= 2)) || fail "the link reconnected $((connects - connects_before)) times for $cuts cuts"
[[ $(sync_finishes) -eq 1 ]] || fail "a network cut caused a second initial sync"
echo "network cuts: $cuts cuts, $((connects - connects_before)) reconnects, no second initial sync, target equals source"

# 3. kill -9 of either node at random moments while a client writes.
RANDOM=4242
for s in $(seq "$seeds"); do
  victim=$([[ $((RANDOM % 2)) -eq 0 ]] && echo a || echo b)
  delay=$(printf '0.%02d' $((20 + RANDOM % 80)))
  log="$work/writes-$s.log"
  : >"$log"
  "$py" "$here/tools/numbered_writer.py" "$src_uri" 2048 "$s" "$log" 2>/dev/null &
  writer=$!
  sleep "$delay"
  kill9_node "$victim"
  if [[ $victim == b ]]; then sleep 0.3; fi
  start_node "$victim"
  if [[ $victim == b ]]; then sleep 0.3; fi
  kill -TERM "$writer" 2>/dev/null || true
  wait "$writer" 2>/dev/null || true
  writer=
  acked=$(wc -l <"$log")
  seq=$(mark "seed-$s")
  wait_acked "$seq"
  "$py" "$here/tools/numbered_writer.py" check "$(tgt_uri "$seq")" 2048 "$s" "$log" >"$work/check.log" 2>&1 ||
    fail "seed $s (kill -9 node $victim after $delay s): $(cat "$work/check.log")"
  compare_at "$seq"
  [[ $(sync_finishes) -eq 1 ]] || fail "seed $s: the restart caused a second initial sync"
  echo "seed $s: kill -9 node $victim after ${delay}s, $acked acknowledged writes, all at the target; target equals source"
done
echo "two nodes: ok"
