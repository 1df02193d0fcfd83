#!/usr/bin/env bash
# Proves the test tools do what they claim: kinesis_mock.sh starts kinesis-mock with an
# ACTIVE stream, kinesis_read.js reads back exactly what was written (and de-aggregates
# KPL), and kinesis_fault_proxy.js injects each fault it advertises: whole-request
# 500/503/400 errors, connection resets, partial failures whose failed records are NOT
# written, dropped replies whose records ARE written, latency, going down and back up,
# and counts it all in /__stats.
set -euo pipefail
cd "$(dirname "$0")/../.."
T=tests/tools
tmp=$(mktemp -d)
KINESIS_MOCK_PID="" FAULT_PROXY_PID="" P2_PID=""
cleanup() {
  [ -n "$P2_PID" ] && $T/fault_proxy.sh stop "$P2_PID"
  [ -n "$FAULT_PROXY_PID" ] && $T/fault_proxy.sh stop "$FAULT_PROXY_PID"
  [ -n "$KINESIS_MOCK_PID" ] && $T/kinesis_mock.sh stop "$KINESIS_MOCK_PID"
  rm -rf "$tmp"
}
trap cleanup EXIT

fails=0
pass() { echo "ok   - $*"; }
fail() { echo "FAIL - $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }

# JSON field of a file: jget FILE 'expression on j' (node, no extra packages).
jget() { node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
  const v=eval(process.argv[2]); console.log(typeof v==="object"?JSON.stringify(v):v)' "$1" "$2"; }

STREAM=tools-test
eval "$(TMPDIR=$tmp $T/kinesis_mock.sh start $STREAM:2)"     # logs land in $tmp, removed at exit
eval "$(TMPDIR=$tmp $T/fault_proxy.sh start "$KINESIS_MOCK_ENDPOINT" --seed 42)"
echo "# kinesis-mock $KINESIS_MOCK_ENDPOINT, proxy $FAULT_PROXY_ENDPOINT control $FAULT_PROXY_CONTROL"

# put NAME PKEY DATA...: PutRecords through the proxy; body in $tmp/NAME.json,
# prints "<http status> <curl exit code>". mkreq + send do the same in two steps, so
# that timing-sensitive checks do not include node's start-up.
mkreq() {
  local name=$1 pkey=$2; shift 2
  node -e 'const [s,k,...d]=process.argv.slice(1);
    console.log(JSON.stringify({StreamName:s,Records:d.map(x=>({Data:Buffer.from(x).toString("base64"),PartitionKey:k}))}))' \
    "$STREAM" "$pkey" "$@" >"$tmp/$name.req"
}
send() {
  local name=$1 d code rc=0
  d=$(date -u +%Y%m%dT%H%M%SZ)
  code=$(curl -sS -o "$tmp/$name.json" -w '%{http_code}' --max-time 20 -X POST "$FAULT_PROXY_ENDPOINT/" \
    -H 'Content-Type: application/x-amz-json-1.1' -H 'X-Amz-Target: Kinesis_20131202.PutRecords' \
    -H "X-Amz-Date: $d" \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=000000000000/${d:0:8}/$KINESIS_MOCK_REGION/kinesis/aws4_request, SignedHeaders=host, Signature=00" \
    --data-binary @"$tmp/$name.req" 2>/dev/null) || rc=$?
  echo "$code $rc"
}
put() { mkreq "$@"; send "$1"; }
fault() { curl -sS -o /dev/null -X POST "$FAULT_PROXY_CONTROL/__fault" -d "$1"; }
stats() { curl -sS "$FAULT_PROXY_CONTROL/__stats" >"$tmp/stats.json"; jget "$tmp/stats.json" "$1"; }
# All data strings in the stream, sorted, one per line.
stream_data() {
  node $T/kinesis_read.js --endpoint "$KINESIS_MOCK_ENDPOINT" --region "$KINESIS_MOCK_REGION" --stream $STREAM "$@" |
    node -e 'const l=require("fs").readFileSync(0,"utf8").split("\n").filter(Boolean);
      for (const x of l) console.log(Buffer.from(JSON.parse(x).data,"base64").toString())' | sort
}
expect_stream() {   # expect_stream "a b c": exactly these strings (sorted) in the stream
  local want got
  want=$(printf '%s\n' $1 | sort)
  got=$(stream_data)
  [ "$want" = "$got" ] && return 0
  echo "# stream: missing [$(comm -23 <(echo "$want") <(echo "$got") | tr '\n' ' ')]" \
       "unexpected [$(comm -13 <(echo "$want") <(echo "$got") | tr '\n' ' ')]"
  return 1
}

# 1. Pass-through.
r=$(put p1 pk a1 a2 a3)
check "pass-through PutRecords answered 200" [ "$r" = "200 0" ]
check "pass-through reply has FailedRecordCount 0" [ "$(jget $tmp/p1.json j.FailedRecordCount)" = 0 ]
check "reader returns exactly the 3 records" expect_stream "a1 a2 a3"
check "other operations pass untouched (DescribeStreamSummary via proxy)" \
  node $T/kinesis_client.js --endpoint "$FAULT_PROXY_ENDPOINT" --region "$KINESIS_MOCK_REGION" wait-active $STREAM 5000

# 2. Scripted whole-request errors: none of these records may reach the stream.
fault '{"script":["500","503","throttle","exceeded","expired","reset"]}'
check "script 500 -> HTTP 500 InternalFailure" [ "$(put e1 pk x1)" = "500 0" ]
check "  body says InternalFailure" [ "$(jget $tmp/e1.json 'j.__type')" = InternalFailure ]
check "script 503 -> HTTP 503" [ "$(put e2 pk x2)" = "503 0" ]
check "script throttle -> 400 ThrottlingException" [ "$(put e3 pk x3)" = "400 0" ]
check "  body says ThrottlingException" [ "$(jget $tmp/e3.json 'j.__type')" = ThrottlingException ]
check "script exceeded -> 400 ProvisionedThroughputExceededException" \
  [ "$(put e4 pk x4; jget $tmp/e4.json 'j.__type')" = "$(printf '400 0\nProvisionedThroughputExceededException')" ]
check "script expired -> 400 ExpiredTokenException" \
  [ "$(put e5 pk x5; jget $tmp/e5.json 'j.__type')" = "$(printf '400 0\nExpiredTokenException')" ]
r=$(put e6 pk x6)
check "script reset -> connection reset, no HTTP status (got '$r')" test "${r%% *}" = 000 -a "${r##* }" != 0
check "script consumed: next request passes (200)" [ "$(put e7 pk a4)" = "200 0" ]
check "no record of a rejected request reached the stream" expect_stream "a1 a2 a3 a4"
check "stats count each injected error once" \
  [ "$(stats '[j.injected.error500,j.injected.error503,j.injected.throttle,j.injected.exceeded,j.injected.expired,j.injected.reset].join()')" = "1,1,1,1,1,1" ]
check "stats: 6 records rejected whole" [ "$(stats j.records.rejectedWhole)" = 6 ]

# 3. Scripted partial failure: failed records are reported and NOT forwarded.
fault '{"script":["partial:1,3"]}'
check "partial: HTTP 200" [ "$(put q1 pk b0 b1 b2 b3 b4)" = "200 0" ]
check "partial: FailedRecordCount 2" [ "$(jget $tmp/q1.json j.FailedRecordCount)" = 2 ]
check "partial: entries 1 and 3 are ProvisionedThroughputExceededException, in request order" \
  [ "$(jget $tmp/q1.json 'j.Records.map(r=>r.ErrorCode||(r.SequenceNumber?"ok":"?")).join()')" = \
    "ok,ProvisionedThroughputExceededException,ok,ProvisionedThroughputExceededException,ok" ]
check "partial: only b0 b2 b4 were written" expect_stream "a1 a2 a3 a4 b0 b2 b4"
fault '{"script":["partial:all"]}'
check "partial:all: 200 and every record failed" \
  [ "$(put q2 pk c0 c1; jget $tmp/q2.json 'j.FailedRecordCount')" = "$(printf '200 0\n2')" ]
check "partial:all: nothing written" expect_stream "a1 a2 a3 a4 b0 b2 b4"

# 4. Random per-record throttling (seeded): the stream holds exactly the records the
#    replies called successful, and the counts agree with /__stats.
curl -sS -o /dev/null -X POST "$FAULT_PROXY_CONTROL/__stats/reset"
fault '{"throttleRecordRate":0.3,"internalRecordRate":0.1}'
ok_list=""
failed_total=0
for n in 1 2 3; do
  recs=$(seq -f "r$n-%g" 1 100)
  put rr$n pk $recs >/dev/null
  failed_total=$((failed_total + $(jget $tmp/rr$n.json j.FailedRecordCount)))
  ok_list="$ok_list $(node -e 'const j=JSON.parse(require("fs").readFileSync(process.argv[1]));
    const d=process.argv.slice(2); console.log(d.filter((_,i)=>!j.Records[i].ErrorCode).join(" "))' $tmp/rr$n.json $recs)"
done
fault '{"reset":true}'
check "random partial failures happened ($failed_total of 300)" test "$failed_total" -gt 20 -a "$failed_total" -lt 220
check "both error codes used" grep -q InternalFailure $tmp/rr*.json
check "stats: injectedFailed = FailedRecordCount sum" [ "$(stats j.records.injectedFailed)" = "$failed_total" ]
check "stats: forwarded + injectedFailed = received = 300" \
  test "$(stats 'j.records.forwarded + j.records.injectedFailed')" = 300 -a "$(stats j.records.received)" = 300
check "stream holds exactly the records reported successful" expect_stream "a1 a2 a3 a4 b0 b2 b4 $ok_list"

# 5. Dropped reply: records are written but the client sees a reset (the only way a
#    record may legitimately arrive twice); counted as ackDropped.
curl -sS -o /dev/null -X POST "$FAULT_PROXY_CONTROL/__stats/reset"
fault '{"script":["dropReply"]}'
r=$(put d1 pk dr1 dr2)
check "dropReply: client sees no reply (got '$r')" [ "${r%% *}" = 000 ]
check "dropReply: records are in the stream anyway" expect_stream "a1 a2 a3 a4 b0 b2 b4 $ok_list dr1 dr2"
check "stats: ackDropped 2" [ "$(stats j.records.ackDropped)" = 2 ]
printf '%s\n' a1 a2 a3 a4 b0 b2 b4 $ok_list dr1 dr2 >"$tmp/expected.txt"
node $T/kinesis_read.js --endpoint "$KINESIS_MOCK_ENDPOINT" --region "$KINESIS_MOCK_REGION" --stream $STREAM >"$tmp/actual.jsonl"
check "stream_compare: the stream is exactly what was acknowledged or ack-dropped" \
  node $T/stream_compare.js --quiet --expected "$tmp/expected.txt" --actual "$tmp/actual.jsonl"
head -n -1 "$tmp/expected.txt" >"$tmp/expected-short.txt"
check "stream_compare: an unexpected record fails" \
  bash -c "! node $T/stream_compare.js --quiet --expected $tmp/expected-short.txt --actual $tmp/actual.jsonl >/dev/null 2>&1"
echo extra >>"$tmp/expected.txt"
check "stream_compare: a missing record fails" \
  bash -c "! node $T/stream_compare.js --quiet --expected $tmp/expected.txt --actual $tmp/actual.jsonl >/dev/null 2>&1"
# Duplicates (in another outer record) and ndjson splitting, on synthetic reader output.
b64() { printf '%s' "$1" | base64 -w0; }
printf '%s\n' x y z >"$tmp/e2.txt"
{ echo "{\"shardId\":\"s\",\"sequenceNumber\":\"1\",\"data\":\"$(b64 'x
y
')\"}"
  echo "{\"shardId\":\"s\",\"sequenceNumber\":\"2\",\"data\":\"$(b64 'y
z')\"}"; } >"$tmp/a2.jsonl"
check "stream_compare --split-lines: a duplicate fails by default" \
  bash -c "! node $T/stream_compare.js --quiet --split-lines --expected $tmp/e2.txt --actual $tmp/a2.jsonl >/dev/null"
check "stream_compare --split-lines: allowed with --max-duplicate-records 1" \
  [ "$(node $T/stream_compare.js --quiet --split-lines --max-duplicate-records 1 --expected $tmp/e2.txt --actual $tmp/a2.jsonl)" = \
    '{"expected":3,"actual":4,"missing":0,"unexpected":0,"duplicates":1,"duplicateRecords":1}' ]

# 6. Latency: a request takes at least latencyMs.
fault '{"latencyMs":400}'
t=$(curl -sS -o /dev/null -w '%{time_total}' -X POST "$FAULT_PROXY_ENDPOINT/" -H 'X-Amz-Target: Kinesis_20131202.PutRecords' \
  -H 'Authorization: AWS4-HMAC-SHA256 Credential=000000000000/20250101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00' \
  -d "{\"StreamName\":\"$STREAM\",\"Records\":[{\"Data\":\"bGF0\",\"PartitionKey\":\"k\"}]}")
check "latency 400 ms applied (request took ${t}s)" node -e "process.exit($t >= 0.4 ? 0 : 1)"
fault '{"latencyMs":0}'
# latencyMsPerMiB: in proportion to the body (a 256 KiB record: 341 KiB of body -> 1.3 s at 4 s/MiB).
fault '{"latencyMsPerMiB":4000}'
node -e 'console.log(JSON.stringify({StreamName: process.argv[1],
  Records: [{ Data: Buffer.alloc(262144, 97).toString("base64"), PartitionKey: "big" }]}))' $STREAM >"$tmp/big.req"
mkreq small pk tiny
t0=$(date +%s%N); r_big=$(send big); t1=$(date +%s%N); r_small=$(send small); t2=$(date +%s%N)
check "latencyMsPerMiB: both requests answered ($r_big, $r_small)" [ "$r_big $r_small" = "200 0 200 0" ]
check "latencyMsPerMiB: 341 KiB took at least 1.3 s ($(((t1 - t0) / 1000000)) ms)" [ $(((t1 - t0) / 1000000)) -ge 1300 ]
check "latencyMsPerMiB: a tiny body is not held ($(((t2 - t1) / 1000000)) ms)" [ $(((t2 - t1) / 1000000)) -lt 1000 ]
fault '{"latencyMsPerMiB":0}'

# 7. Whole-request error rate 1: every request fails.
fault '{"error500Rate":1}'
check "error500Rate 1: 500" [ "$(put w1 pk z1)" = "500 0" ]
check "error500Rate 1: 500 again" [ "$(put w2 pk z2)" = "500 0" ]
fault '{"reset":true}'

# 8. Down (refuse): connection refused, then back.
mkreq n1 pk y1
fault '{"down":true}'
r=$(send n1)
check "down/refuse: connection refused (curl exit 7, got '$r')" [ "$r" = "000 7" ]
fault '{"down":false}'
mkreq n2 pk lat
up_again() { for _ in $(seq 1 200); do [ "$(send n2)" = "200 0" ] && return 0; sleep 0.05; done; return 1; }
check "back up after down:false" up_again
# Down (reset): accepted then reset.
# (curl may report a reset that races its connect as exit 7 too: the counter tells them apart.)
resets_before=$(stats j.injected.downResets)
mkreq n3 pk y3
fault '{"down":true,"downMode":"reset"}'
r=$(send n3)
check "down/reset: connection fails without a reply (got '$r')" test "${r%% *}" = 000 -a "${r##* }" != 0
check "down/reset: the connection was accepted and reset (downResets +1)" \
  [ "$(stats j.injected.downResets)" = $((resets_before + 1)) ]
fault '{"down":false,"downMode":"refuse"}'
# Down with downMs: comes back by itself.
mkreq n4 pk y4
fault '{"down":true,"downMs":6000}'
check "down with downMs: refused at first" [ "$(send n4)" = "000 7" ]
check "down with downMs: back up by itself" up_again
check "records sent while down never reached the stream" bash -c "! node $T/kinesis_read.js --endpoint $KINESIS_MOCK_ENDPOINT --region $KINESIS_MOCK_REGION --stream $STREAM | grep -q '\"$(printf y1 | base64)\"\|\"$(printf y3 | base64)\"\|\"$(printf y4 | base64)\"'"

# 9. Bad control input is refused and changes nothing.
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$FAULT_PROXY_CONTROL/__fault" -d '{"error500Rate":7}')
check "invalid rate refused with 400" [ "$code" = 400 ]
check "configuration unchanged" [ "$(curl -sS $FAULT_PROXY_CONTROL/__fault | node -e 'console.log(JSON.parse(require("fs").readFileSync(0)).error500Rate)')" = 0 ]

# 9b. Configuration from the command line and the environment at start-up.
eval "$(KFP_SEED=7 TMPDIR=$tmp $T/fault_proxy.sh start "$KINESIS_MOCK_ENDPOINT" --config '{"script":["503"]}' --error500-rate 0 |
  sed 's/^FAULT_PROXY_/P2_/')"
main_ep=$FAULT_PROXY_ENDPOINT
FAULT_PROXY_ENDPOINT=$P2_ENDPOINT
mkreq c1 pk cfg1
check "--config script applied at start (503 first)" [ "$(send c1)" = "503 0" ]
check "then requests pass" [ "$(send c1)" = "200 0" ]
check "KFP_SEED read from the environment" [ "$(curl -sS $P2_CONTROL/__stats | node -pe 'JSON.parse(require("fs").readFileSync(0)).seed')" = 7 ]
$T/fault_proxy.sh stop "$P2_PID"
eval "$(TMPDIR=$tmp $T/fault_proxy.sh start "$KINESIS_MOCK_ENDPOINT" --down | sed 's/^FAULT_PROXY_/P2_/')"
FAULT_PROXY_ENDPOINT=$P2_ENDPOINT
check "--down: starts down (connection refused)" [ "$(send c1)" = "000 7" ]
curl -sS -o /dev/null -X POST "$P2_CONTROL/__fault" -d '{"down":false}'
check "--down: up once told so (the control reply waits for the port)" [ "$(send c1)" = "200 0" ]
$T/fault_proxy.sh stop "$P2_PID"
FAULT_PROXY_ENDPOINT=$main_ep

# 10. The reader de-aggregates KPL records (encoded by aws-kinesis-agg itself here).
node -e '
  const agg = require("./tests/node/node_modules/aws-kinesis-agg");
  const recs = [0,1,2].map(i => ({ partitionKey: "kp", data: Buffer.from("kpl-" + i) }));
  agg.aggregate(recs, (enc) => console.log(JSON.stringify({StreamName: process.argv[1],
    Records: [{ PartitionKey: enc.partitionKey, Data: enc.data.toString("base64") }]})),
    () => {}, (e) => { console.error(e); process.exit(1); });' $STREAM >"$tmp/kpl.req"
node $T/kinesis_client.js --endpoint "$KINESIS_MOCK_ENDPOINT" --region "$KINESIS_MOCK_REGION" call PutRecords "$(cat $tmp/kpl.req)" >/dev/null
check "reader --deaggregate expands the KPL record" bash -c \
  "node $T/kinesis_read.js --endpoint $KINESIS_MOCK_ENDPOINT --region $KINESIS_MOCK_REGION --stream $STREAM --deaggregate |
   grep '\"aggregated\":true' | grep -c '\"partitionKey\":\"kp\"' | grep -qx 3"
check "reader without --deaggregate sees one record" bash -c \
  "[ \$(node $T/kinesis_read.js --endpoint $KINESIS_MOCK_ENDPOINT --region $KINESIS_MOCK_REGION --stream $STREAM | grep -c '\"partitionKey\":\"kp\"') = 1 ]"
total=$(node $T/kinesis_read.js --endpoint "$KINESIS_MOCK_ENDPOINT" --region "$KINESIS_MOCK_REGION" --stream $STREAM --count)
check "reader --expect waits and fails (status 3) when too few records arrive" bash -c \
  "node $T/kinesis_read.js --endpoint $KINESIS_MOCK_ENDPOINT --region $KINESIS_MOCK_REGION --stream $STREAM --count --expect $((total + 1)) --timeout-ms 300 >/dev/null 2>&1; [ \$? = 3 ]"

# 11. --spread-records N: a stream written in generations of N records, read back as one.
node $T/kinesis_client.js --endpoint "$KINESIS_MOCK_ENDPOINT" --region "$KINESIS_MOCK_REGION" create spread 2 >/dev/null
eval "$(TMPDIR=$tmp $T/fault_proxy.sh start "$KINESIS_MOCK_ENDPOINT" --spread-records 3 | sed 's/^FAULT_PROXY_/P3_/')"
FAULT_PROXY_ENDPOINT=$P3_ENDPOINT
main_stream=$STREAM
STREAM=spread
sp_ok=0
for recs in "s1 s2" "s3 s4" "s5" "s6 s7 s8 s9"; do
  [ "$(put sp pk $recs)" = "200 0" ] && [ "$(jget $tmp/sp.json j.FailedRecordCount)" = 0 ] && sp_ok=$((sp_ok + 1))
done
check "spread: every PutRecords accepted" [ "$sp_ok" = 4 ]
check "spread: a new generation once N would be passed, a request never split" \
  [ "$(curl -sS $P3_CONTROL/__stats | node -pe 'JSON.stringify(JSON.parse(require("fs").readFileSync(0)).spread)')" = \
    '{"records":9,"streams":{"spread":["spread","spread-g1","spread-g2"]}}' ]
check "spread: the first generation is the stream itself" expect_stream "s1 s2"
STREAM=spread-g1
check "spread: the second holds the next requests up to N" expect_stream "s3 s4 s5"
check "spread: each generation has the stream's shard count" [ "$(node $T/kinesis_client.js --endpoint \
  "$KINESIS_MOCK_ENDPOINT" --region "$KINESIS_MOCK_REGION" call ListShards '{"StreamName":"spread-g2"}' |
  grep -o '"ShardId"' | wc -l)" = 2 ]
STREAM=spread,spread-g1,spread-g2
check "spread: the reader reads the generations as one" expect_stream "s1 s2 s3 s4 s5 s6 s7 s8 s9"
check "spread: shard ids named by their generation" bash -c \
  "node $T/kinesis_read.js --endpoint $KINESIS_MOCK_ENDPOINT --region $KINESIS_MOCK_REGION --stream $STREAM |
   grep -c '\"shardId\":\"spread-g2/shardId-' | grep -qx 4"
$T/fault_proxy.sh stop "$P3_PID"
STREAM=$main_stream
FAULT_PROXY_ENDPOINT=$main_ep

# 12. The reader survives an expired shard iterator (they live 5 minutes; reading hundreds of
# shards takes longer): a scripted Kinesis expires the first iterator after one record, and
# the reader must go on after the last record it read, neither losing nor repeating one.
node -e '
  const http = require("http");
  let iters = 0, expired = 0;
  const recs = ["r1", "r2", "r3"].map((d, i) => ({ SequenceNumber: String(i + 1), PartitionKey: "k",
    Data: Buffer.from(d).toString("base64"), ApproximateArrivalTimestamp: 1 }));
  http.createServer((req, res) => {
    let b = ""; req.on("data", (c) => (b += c)); req.on("end", () => {
      const j = JSON.parse(b), op = String(req.headers["x-amz-target"]).split(".")[1];
      const send = (st, o) => { res.writeHead(st, { "content-type": "application/x-amz-json-1.1" }); res.end(JSON.stringify(o)); };
      if (op === "ListShards") return send(200, { Shards: [{ ShardId: "shardId-000000000000" }] });
      if (op === "GetShardIterator") {
        const from = j.ShardIteratorType === "AFTER_SEQUENCE_NUMBER" ? Number(j.StartingSequenceNumber) : 0;
        return send(200, { ShardIterator: `${++iters}:${from}` });
      }
      const [n, pos] = j.ShardIterator.split(":").map(Number);
      if (n === 1 && pos === 1) { expired++; return send(400, { __type: "ExpiredIteratorException", message: "expired" }); }
      const out = recs.slice(pos, n === 1 ? pos + 1 : recs.length);
      send(200, { Records: out, NextShardIterator: `${n}:${pos + out.length}`, MillisBehindLatest: 0 });
    });
  }).listen(0, "127.0.0.1", function () { console.log(this.address().port); });
  setTimeout(() => process.exit(0), 20000);' >"$tmp/fake.port" &
fake_pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/fake.port" ] && break; sleep 0.05; done
check "reader: an expired iterator is taken again after the last record read (r1 r2 r3, once each)" bash -c \
  "node $T/kinesis_read.js --endpoint http://127.0.0.1:$(cat "$tmp/fake.port") --stream s |
   node -e 'console.log(require(\"fs\").readFileSync(0,\"utf8\").split(\"\\n\").filter(Boolean).map((l)=>Buffer.from(JSON.parse(l).data,\"base64\")).join(\" \"))' |
   grep -qx 'r1 r2 r3'"
kill "$fake_pid" 2>/dev/null || true

echo "# $fails failure(s)"
[ "$fails" = 0 ]
