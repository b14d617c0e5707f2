#!/usr/bin/env bash
# Consistency groups end to end: `ferry server` and three `ferry node` processes (a and c at
# site primary, b at recovery). Two machines, m1 on node a and m2 on node c, are protected
# into group "shop"; every API call goes through the OpenAPI-checking proxy.
#
# The consistency test: one writer (libnbd, through the splitters' NBD exports) writes record
# n to m1's disk, waits for the acknowledgement, then writes record n to m2's disk — m2's
# record n depends on m1's. While it writes, the server takes a group point every second. Then
# every group point is opened on both target replicas (marker:<id>, the node's NBD views) and
# must be a consistent cut: the newest record on m2 is never newer than the newest on m1.
# Every fourth second the point is app-consistent: the machines' freeze hooks (which log to a
# file) must have run on each member before its marker and the thaw hooks after.
# Also: membership rules and bad requests are refused with the documented errors, the CLI.
set -euo pipefail
ferry=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
work=$(mktemp -d /tmp/ferry-groups.XXXXXX)
NODES="a b c"
source "$here/lib/nodes.sh"
source "$here/lib/server.sh"
start_server
start_api_proxy

echo "== three nodes: a and c at primary, b at recovery"
enroll_nodes
etoken=$(ok POST /nodes/enrollments '{"site": "primary"}' | json 'j["token"]')
sed -i 's/^site = .*/site = "primary"/' "$work/c.toml"
printf '[server]\nurl = "%s"\nenroll_token = "%s"\n' "http://127.0.0.1:$server_port" "$etoken" >>"$work/c.toml"
start_node c
for _ in $(seq 200); do
  [[ $(ok GET /nodes | json 'len(j["items"])') == 3 ]] && break
  sleep 0.1
done
[[ $(ok GET /nodes | json 'len(j["items"])') == 3 ]] || fail "node c did not register: $(ok GET /nodes)"

echo "== two machines protected into group shop"
hooks=$work/hooks.log
ok POST /policies '{"name": "grp", "rpo_threshold_seconds": 30, "crash_consistent_interval_seconds": 1, "app_consistent_interval_seconds": 4}' >/dev/null
for m in 1 2; do
  node=$([[ $m == 1 ]] && echo node-a || echo node-c)
  ok POST /machines "{\"name\": \"m$m\", \"site\": \"primary\", \"node\": \"$node\",
    \"disks\": [{\"name\": \"disk0\", \"path\": \"$work/m$m.img\", \"size\": 67108864}],
    \"run\": {\"hooks\": {\"freeze\": \"echo freeze \$FERRY_VOLUME \$(date +%s%N) >>$hooks\",
                        \"thaw\": \"echo thaw \$FERRY_VOLUME \$(date +%s%N) >>$hooks\"}}}" >/dev/null
done
refused 400 InvalidArgument POST /items '{"machine": "m1", "target_site": "recovery", "consistency_group": "no spaces"}'
j1=$(ok POST /items '{"machine": "m1", "target_site": "recovery", "policy": "grp", "consistency_group": "shop"}' | job_of)
j2=$(ok POST /items '{"machine": "m2", "target_site": "recovery", "policy": "grp", "consistency_group": "shop"}' | job_of)
wait_job "$j1"
wait_job "$j2"
[[ $(ok GET /items/item-1 | json 'j["consistency_group"]') == shop ]] || fail "item-1 is not shown in group shop"
[[ $(ok GET /consistency-groups/shop | json '[m["name"] for m in j["members"]]') == "['m1', 'm2']" ]] ||
  fail "group shop: $(ok GET /consistency-groups/shop)"
[[ $(ok GET /consistency-groups/cg-1 | json '(j["interval_s"], j["app_interval_s"])') == "(1, 4)" ]] ||
  fail "group intervals: $(ok GET /consistency-groups/cg-1)"

echo "== membership rules and bad requests"
refused 409 AlreadyExists POST /consistency-groups '{"name": "shop"}'
refused 409 FailedPrecondition POST /consistency-groups '{"name": "other", "members": ["m1"]}'
refused 404 NotFound GET /consistency-groups/other  # the refused create changed nothing
ok POST /consistency-groups '{"name": "other"}' >/dev/null
refused 409 FailedPrecondition POST /consistency-groups/other/members '{"item": "item-1"}'
grep -q "already in consistency group 'shop'" "$work/resp" || fail "the refusal does not name the group: $(cat "$work/resp")"
refused 404 NotFound POST /consistency-groups/nope/members '{"item": "item-1"}'
refused 404 NotFound POST /consistency-groups/other/members '{"item": "item-99"}'
refused 400 InvalidArgument POST /consistency-groups/other/members '{"itme": "item-1"}'
refused 404 NotFound DELETE /consistency-groups/other/members/item-1
refused 400 InvalidArgument POST /consistency-groups '{"name": "bad name"}'
refused 400 InvalidArgument POST /consistency-groups '{"name": "x", "members": "m1"}'
ok DELETE /consistency-groups/other >/dev/null
refused 404 NotFound GET /consistency-groups/other

echo "== a writer with dependent writes while group points are taken"
cat >"$work/writer.py" <<'PY'
# writer.py URI_A URI_B STOP: record n goes to A, and to B only once A acknowledged it.
import os, sys, nbd
a, b = nbd.NBD(), nbd.NBD()
a.connect_uri(sys.argv[1])
b.connect_uri(sys.argv[2])
n = 0
while not os.path.exists(sys.argv[3]):
    n += 1
    block = (b"REC %012d\n" % n).ljust(4096, b"\0")
    offset = (n % 1024) * 4096
    a.pwrite(block, offset)  # returns with the server's acknowledgement
    b.pwrite(block, offset)
print(n)
PY
"$py" "$work/writer.py" "nbd+unix:///m1.disk0?socket=$work/a.sock" "nbd+unix:///m2.disk0?socket=$work/c.sock" \
  "$work/stop" >"$work/writer.out" 2>&1 &
writer=$!
sleep 14
touch "$work/stop"
wait "$writer" || fail "the writer failed: $(cat "$work/writer.out")"
writer=
echo "   the writer wrote $(cat "$work/writer.out") records to each disk"

echo "== the newest common point catches up with the last point"
for _ in $(seq 300); do
  g=$(ok GET /consistency-groups/shop)
  [[ $(json 'j["latest_common_point"] is not None and j["last_point"] is not None and
             j["latest_common_point"]["marker_id"] == j["last_point"]["marker_id"]' <<<"$g") == True ]] && break
  sleep 0.1
done
[[ $(json 'j["latest_common_point"]["marker_id"] == j["last_point"]["marker_id"]' <<<"$g") == True ]] ||
  fail "the latest common point does not reach the last point: $g"
echo "   $(json '"hold ms: p50 %.1f p99 %.1f max %.1f over %d points; problems: %s" % (j["hold_ms"]["p50"], j["hold_ms"]["p99"], j["hold_ms"]["max"], j["hold_ms"]["points"], j["problems"])' <<<"$g")"
[[ $(json 'j["latest_common_point"]["points"]["item-1"] == j["latest_common_point"]["points"]["item-2"]' <<<"$g") == True ]] ||
  fail "the common point is not the same marker on both members: $g"
[[ $(ok GET '/items/item-2/recovery-points?kind=group' | json '[p["label"] for p in j["items"]][0].startswith("cg-1-")') == True ]] ||
  fail "the group points are not listed as the members' recovery points"

echo "== every group point is a consistent cut on the target replicas"
# The server's group points over both machines, from its store: name, app-consistent, hold
# ms. (A point taken while only m1 was protected spans m1 alone, as a group point covers the
# members that replicate.)
stop_server  # the store is read alone; the nodes keep their views
"$py" - "$work/server/ferry.db" >"$work/points" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
rows = db.execute("SELECT marker_id, app_consistent, hold_ms, members FROM group_points ORDER BY time_ns")
for name, app, hold, members in rows:
    if len(json.loads(members)) == 2:
        print(name, app, hold)
PY
start_server
[[ $(wc -l <"$work/points") -ge 8 ]] || fail "only $(wc -l <"$work/points") group points in 14 s at a 1 s interval"
cat >"$work/check.py" <<'PY'
# check.py POINTS HOOKS API_URL TOKEN SOCKET: opens every group point on both replicas.
import calendar, json, sys, time, urllib.error, urllib.request, nbd
points, hooks, api, token, sock = sys.argv[1:]
def view(volume, point):
    # The newest points were taken while the server was being stopped: they may still be on
    # their way to the replica.
    for attempt in range(100):
        req = urllib.request.Request(api + "/v1/replicas/%s/views" % volume, data=json.dumps({"point": point}).encode(),
                                     headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        try:
            return json.load(urllib.request.urlopen(req))
        except urllib.error.HTTPError as e:
            if e.code != 404 or attempt == 99:
                raise AssertionError("%s on %s: %s %s" % (point, volume, e.code, e.read().decode()))
            time.sleep(0.1)
def newest(export):
    h = nbd.NBD()
    h.connect_uri("nbd+unix:///%s?socket=%s" % (export, sock))
    data = h.pread(1024 * 4096, 0)
    best = 0
    for off in range(0, len(data), 4096):
        if data[off:off + 4] == b"REC ":
            best = max(best, int(data[off + 4:off + 16]))
    return best
def unix_ns(rfc3339):  # "2026-11-26T05:06:18.123456789Z"
    sec, _, frac = rfc3339.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(sec, "%Y-%m-%dT%H:%M:%S")) * 10**9 + int(frac.ljust(9, "0")[:9])
events = {}  # volume -> [(ns, "freeze"|"thaw")]
for line in open(hooks):
    what, volume, ns = line.split()
    events.setdefault(volume, []).append((int(ns), what))
checked, app_checked, maxima = 0, 0, []
for line in open(points):
    name, app, hold = line.split()
    group, n = (int(x) for x in name.split("-")[1:])
    marker = "marker:%016x%016x" % (group, n)
    va, vb = view("m1.disk0", marker), view("m2.disk0", marker)
    a, b = newest(va["export"]), newest(vb["export"])
    assert b <= a, "%s is not a consistent cut: m2 has record %d, m1 only %d" % (name, b, a)
    checked += 1
    maxima.append(a)
    if app == "1":
        for volume, v in (("m1.disk0", va), ("m2.disk0", vb)):
            ns = unix_ns(v["time"])  # the marker's time on the replica
            before = [w for (t, w) in events.get(volume, []) if t < ns]
            after = [w for (t, w) in events.get(volume, []) if t > ns]
            assert before and before[-1] == "freeze", "%s on %s: not frozen at its marker (hooks before: %s)" % (name, volume, before[-3:])
            assert after and after[0] == "thaw", "%s on %s: no thaw after its marker (hooks after: %s)" % (name, volume, after[:3])
        app_checked += 1
advanced = len(set(maxima))
print("checked %d group points (%d app-consistent); the newest record on m1 took %d values, up to %d" %
      (checked, app_checked, advanced, max(maxima)))
assert app_checked >= 1, "no app-consistent group point"
assert advanced >= 5, "the records did not advance across the points: %s" % maxima
PY
"$py" "$work/check.py" "$work/points" "$hooks" "http://127.0.0.1:${api_port[b]}" "$token" "$work/b.sock" ||
  fail "the group points are not consistent cuts (above)"

echo "== the CLI"
export FERRY_SERVER=$url FERRY_TOKEN=$stoken FERRY_CONFIG=/dev/null
cli() { "$ferry" "$@" >"$work/cli.out" 2>&1; }
cli_rc() { local rc=0; cli "$@" || rc=$?; echo $rc; }
cli group list || fail "ferry group list: $(cat "$work/cli.out")"
grep -q "shop" "$work/cli.out" || fail "ferry group list: $(cat "$work/cli.out")"
cli group show shop || fail "ferry group show: $(cat "$work/cli.out")"
grep -q "latest common point" "$work/cli.out" && grep -q m2 "$work/cli.out" || fail "ferry group show: $(cat "$work/cli.out")"
cli group create spare || fail "ferry group create: $(cat "$work/cli.out")"
[[ $(cli_rc group add spare m1) == 4 ]] || fail "ferry group add of a member of another group: want exit 4: $(cat "$work/cli.out")"
[[ $(cli_rc group show nope) == 3 ]] || fail "ferry group show of an unknown group: want exit 3: $(cat "$work/cli.out")"
cli group remove shop m2 || fail "ferry group remove: $(cat "$work/cli.out")"
cli group add spare m2 || fail "ferry group add: $(cat "$work/cli.out")"
[[ $("$ferry" group show spare --output json | json '[m["name"] for m in j["members"]]') == "['m2']" ]] ||
  fail "m2 did not move to spare"
cli group delete spare || fail "ferry group delete: $(cat "$work/cli.out")"
[[ $(ok GET /items/item-2 | json 'j["consistency_group"]') == None ]] || fail "a deleted group kept its member"

echo "== every exchange matched the OpenAPI document"
check_api_proxy
echo "consistency groups: OK"
