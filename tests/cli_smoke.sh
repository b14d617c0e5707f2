#!/usr/bin/env bash
# Drives the `ferry` binary as an operator would: create a replica, write, mark, list,
# export and compare with qemu-free tools (cmp), verify, retain, and the error paths.
set -euo pipefail
ferry=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$ferry" replica create "$work/r" --size 4M >/dev/null
head -c 8192 /dev/urandom >"$work/a"
head -c 4096 /dev/urandom >"$work/b"
s1=$("$ferry" replica write "$work/r" --offset 0 --file "$work/a")
m1=$("$ferry" replica marker "$work/r" --kind app-consistent --label first)
"$ferry" replica write "$work/r" --offset 4096 --file "$work/b" >/dev/null
"$ferry" replica marker "$work/r" --kind crash >/dev/null
[[ $s1 == "seq 1" && $m1 == "seq 2" ]] || fail "unexpected seqs: $s1 / $m1"

# Points: both markers listed, newest first, JSON parses.
"$ferry" replica points "$work/r" --output json >"$work/points.json"
python3 - "$work/points.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["points"]
assert [x["seq"] for x in p] == [4, 2], p
assert p[1]["kind"] == "app-consistent" and p[1]["label"] == "first", p
PY
[[ $("$ferry" replica points "$work/r" --kind app --output json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["points"]))') == 1 ]] || fail "kind filter"

# Export the app-consistent point and the latest; compare with what was written.
"$ferry" replica export "$work/r" --point latest-app-consistent --output "$work/p2.img" >/dev/null
"$ferry" replica export "$work/r" --point latest --output "$work/p4.img" >/dev/null
cp "$work/a" "$work/expect2"; truncate -s 4M "$work/expect2"
cmp "$work/p2.img" "$work/expect2" || fail "export at app-consistent point differs"
cp "$work/expect2" "$work/expect4"
dd if="$work/b" of="$work/expect4" bs=4096 seek=1 conv=notrunc status=none
cmp "$work/p4.img" "$work/expect4" || fail "export at latest differs"
"$ferry" replica export "$work/r" --point 1 --output "$work/p1.img" >/dev/null
cmp "$work/p1.img" "$work/expect2" || fail "export at custom point 1 differs"

"$ferry" replica verify "$work/r" | grep -q '^ok: 4 records' || fail "verify"
"$ferry" replica inspect "$work/r" --output json | python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["latest_point"] == 4 and j["markers"] == 2 and j["health"] in ("Healthy", "Warning"), j'
"$ferry" replica retain "$work/r" --window 15d | grep -q "merged to seq 0" || fail "retain"
# Tiers are accepted (thinning itself needs sealed segments: tests/journal_model_test.cc).
"$ferry" replica retain "$work/r" --window 15d --tiers 1h:30m,3d:2h | grep -q "merged to seq 0" || fail "retain --tiers"

# Errors name what was wrong and exit non-zero.
expect_error() {  # expect_error PATTERN CMD...
  local pattern=$1; shift
  if out=$("$@" 2>&1); then fail "succeeded: $*"; fi
  grep -q -- "$pattern" <<<"$out" || fail "error for '$*' lacks '$pattern': $out"
}
expect_error "no MANIFEST" "$ferry" replica inspect "$work/nothing"
expect_error "the ages do not ascend" "$ferry" replica retain "$work/r" --tiers 7d:4h,2h:1h
expect_error "'2h' is not AGE:BUCKET" "$ferry" replica retain "$work/r" --tiers 2h
expect_error "cannot read point" "$ferry" replica export "$work/r" --point yesterday --output "$work/x.img"
expect_error "newer than the latest point" "$ferry" replica export "$work/r" --point 99 --output "$work/x.img"
expect_error "not aligned to the block size" "$ferry" replica write "$work/r" --offset 100 --file "$work/b"
expect_error "past the volume size\|ends past" "$ferry" replica write "$work/r" --offset 4194304 --file "$work/b"
expect_error "already holds a replica" "$ferry" replica create "$work/r" --size 4M
expect_error "is not a size" "$ferry" replica create "$work/r2" --size lots
# A replica held by another process is refused, not shared.
expect_error "in use by another process" flock "$work/r/LOCK" "$ferry" replica inspect "$work/r"
# Corrupt a record payload in place: verify reports the segment and offset.
seg=$(ls "$work/r/journal" | head -1)
# Flip the byte (writing a fixed one would leave it unchanged when the random data held it).
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(200); b = f.read(1); f.seek(200); f.write(bytes([b[0] ^ 0xff]))' "$work/r/journal/$seg"
expect_error "segment 1 offset" "$ferry" replica verify "$work/r"
echo "cli smoke: all checks passed"
