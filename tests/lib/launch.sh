# Shared by tests/launch_e2e.sh and bench/recovery_bench.sh: two nodes whose qemu launchers
# start the test guest (tests/guest, service mode), a protected machine "vm1" whose source
# runs at site primary from node a's splitter export, and helpers to read jobs and consoles.
# Source it after tests/lib/nodes.sh and tests/lib/server.sh (NODES="a b"), with ferry, py,
# here (the tests/ directory) and work set; then call launch_setup DISK_BYTES.
src_qemu=
launch_finish() {
  stop_server
  if [[ -n $src_qemu ]]; then { kill -KILL "$src_qemu"; wait "$src_qemu"; } 2>/dev/null || true; fi
  # The launchers' QEMU processes live in sessions of their own: find them by their files.
  pkill -KILL -f "$work/" 2>/dev/null || true
  cleanup
}
trap launch_finish EXIT
show_consoles() {
  local f
  for f in "$work/source-console.log" "$work"/{a,b}-data/machines/*/console.log; do
    [[ -f $f ]] || continue
    echo "---- console ${f#$work/} (last 25 lines)" >&2
    tail -n 25 "$f" >&2
  done
}
eval "server_$(declare -f fail)"
fail() { show_consoles; server_fail "$@"; }

guest=${FERRY_GUEST_DIR:-$(dirname "$ferry")/guest}
guest_cmdline="console=ttyS0 panic=-1 quiet no_timer_check cryptomgr.notests ferry.mode=service ferry.interval=0.1"
qboot=/usr/share/qemu/qboot.rom

# job_steps ID: "step=SECONDS ..." from the job's step times.
job_steps() {
  ok GET "/jobs/$1" | "$py" -c '
import datetime, json, sys
def t(s):
    day, _, frac = s.rstrip("Z").partition(".")
    return datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.timezone.utc).timestamp() + float("0." + (frac or "0"))
j = json.load(sys.stdin)
print(" ".join("%s=%.2f" % (s["name"], t(s["ended_at"]) - t(s["started_at"]))
               for s in j["steps"] if s.get("started_at") and s.get("ended_at")))'
}
# console [running|test]: the item's machine console, through the API.
console() { ok GET "/items/item-1/console?machine=${1:-running}&limit=1048576" | json 'j["text"]'; }
# records_of TEXT WHAT: N from the guest's "records N contiguous"; fails unless it also said
# "verify ok" (an unbroken prefix 0..N-1).
records_of() {
  local text=$1 what=$2 n
  n=$(sed -n 's/^records \([0-9]*\) contiguous$/\1/p' <<<"$text" | head -1)
  [[ -n $n ]] || fail "$what: the guest did not report its records"
  grep -q '^verify ok$' <<<"$text" || fail "$what: the records are not an unbroken prefix: $(grep '^verify' <<<"$text")"
  echo "$n"
}
last_wrote() { grep -a '^wrote ' "$1" | tail -1 | cut -d' ' -f2; }

# launch_setup DISK_BYTES: builds the guest, starts the server and nodes a (primary) and b
# (recovery) with qemu launchers, creates machine vm1 (probe: its banner on port 7; shutdown
# and freeze/thaw through its QMP socket), protects it as item-1 under policy "drill", and
# starts the source machine, which then writes a record every 0.1 s.
launch_setup() {
  local size=$1 n fw=
  "$here/guest/build-guest.sh" "$guest"
  [[ -f $qboot ]] && fw="firmware = \"$qboot\""
  for n in a b; do
    printf '[launcher]\nkind = "qemu"\n%s\n[networks.default]\nmode = "user"\nsubnet = "10.0.2.0/24"\n' "$fw" >>"$work/$n.toml"
  done
  start_server
  url="http://127.0.0.1:$server_port"
  enroll_nodes
  ok POST /policies '{"name": "drill", "rpo_threshold_seconds": 30, "crash_consistent_interval_seconds": 1, "app_consistent_interval_seconds": 3}' >/dev/null
  qmp_src="$work/source-qmp.sock"
  ok POST /machines "$(cat <<JSON
{"name": "vm1", "site": "primary", "node": "node-a",
 "disks": [{"name": "disk0", "path": "$work/vm1-disk0.img", "size": $size}],
 "run": {"boot": {"kernel": "$guest/vmlinuz", "initrd": "$guest/initramfs.cpio.gz", "cmdline": "$guest_cmdline"},
         "probe": {"tcp_port": 7, "timeout_s": 180},
         "shutdown": {"qmp": "$qmp_src", "timeout_s": 30},
         "hooks": {"freeze": "$py $here/tools/qmp.py $qmp_src stop", "thaw": "$py $here/tools/qmp.py $qmp_src cont"}}}
JSON
)" >/dev/null
  local job
  job=$(ok POST /items '{"machine": "vm1", "target_site": "recovery", "policy": "drill"}' | job_of)
  wait_job "$job"
  [[ $(item_state) == Protected ]] || fail "item is $(item_state) after enable"
}

# start_source: boots the source machine from node a's splitter export (as its operator
# would: QEMU with a QMP socket Ferry knows) and waits until it wrote 30 records.
start_source() {
  local accel=(-accel tcg) fw=()
  "$here/tools/kvm-usable.sh" 2>/dev/null && accel=(-accel kvm -cpu host)
  [[ -f $qboot ]] && fw=(-bios "$qboot")
  qemu-system-x86_64 -nodefaults -no-user-config -machine pc "${accel[@]}" "${fw[@]}" -smp 1 -m 256 -display none \
    -serial "file:$work/source-console.log" -qmp "unix:$qmp_src,server=on,wait=off" -nic none \
    -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.cpio.gz" -append "$guest_cmdline" \
    -drive "file=nbd+unix:///vm1.disk0?socket=$work/a.sock,format=raw,if=virtio,cache=none" \
    </dev/null >"$work/source-qemu.log" 2>&1 &
  src_qemu=$!
  for _ in $(seq 600); do
    [[ $(last_wrote "$work/source-console.log") -ge 30 ]] 2>/dev/null && return 0
    kill -0 "$src_qemu" 2>/dev/null || fail "the source machine exited: $(cat "$work/source-qemu.log")"
    sleep 0.1
  done
  fail "the source machine did not write 30 records in 60 s"
}
