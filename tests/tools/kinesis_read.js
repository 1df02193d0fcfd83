#!/usr/bin/env node
/*
 * kinesis_read.js: reads every record of a stream back and prints one JSON line per
 * record, shard by shard in sequence order (ListShards, GetShardIterator TRIM_HORIZON,
 * GetRecords until caught up). Node built-ins, plus aws-kinesis-agg for --deaggregate.
 *
 * Usage: node tests/tools/kinesis_read.js --endpoint URL --stream NAME[,NAME...] [options]
 *   several streams (the generations kinesis_fault_proxy.js --spread-records wrote) are
 *   read one after the other; their shard ids are then prefixed "<stream>/"
 *   --region R          region of the stream (default $AWS_REGION or us-east-1)
 *   --deaggregate       expand KPL aggregated records into their user records
 *                       (aws-kinesis-agg, MD5 verified; a bad one is an error)
 *   --expect N          keep polling until at least N records (after de-aggregation)
 *                       were read, or --timeout-ms passes (exit status 3 then)
 *   --timeout-ms T      default 30000
 *   --count             print only the number of records
 * Output lines: {"shardId","sequenceNumber","partitionKey","data":"<base64>",
 *   "arrival": ms since epoch} and, for de-aggregated user records, "subSequenceNumber"
 *   and "aggregated":true (the outer record's sequence number is kept).
 */
'use strict';
const path = require('path');
const kc = require('./kinesis_client');

function parseArgs(argv) {
  const o = { region: process.env.AWS_REGION || 'us-east-1', timeoutMs: 30000, expect: 0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--endpoint') o.endpoint = argv[++i];
    else if (a === '--stream') o.stream = argv[++i];
    else if (a === '--region') o.region = argv[++i];
    else if (a === '--deaggregate') o.deaggregate = true;
    else if (a === '--expect') o.expect = Number(argv[++i]);
    else if (a === '--timeout-ms') o.timeoutMs = Number(argv[++i]);
    else if (a === '--count') o.count = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.endpoint || !o.stream) throw new Error('--endpoint and --stream are required');
  return o;
}

function ok(r, what) {
  if (r.status !== 200) throw new Error(`${what}: HTTP ${r.status} ${r.raw.slice(0, 300)}`);
  return r.body;
}

async function listShards(o, stream) {
  const shards = [];
  let token = null;
  do {
    const body = ok(await kc.callRetry(o.endpoint, 'ListShards',
      token ? { NextToken: token } : { StreamName: stream }, o), 'ListShards');
    shards.push(...body.Shards);
    token = body.NextToken;
  } while (token);
  return shards;
}

function deaggregate(rec) {
  const agg = require(path.join(__dirname, '..', 'node', 'node_modules', 'aws-kinesis-agg'));
  return new Promise((resolve, reject) => {
    agg.deaggregateSync({ partitionKey: rec.PartitionKey, sequenceNumber: rec.SequenceNumber, data: rec.Data },
      true, (err, recs) => (err ? reject(err) : resolve(recs)));
  });
}

/*
 * A shard iterator lives 5 minutes (kinesis-mock enforces it too), and reading hundreds
 * of shards takes longer: each is taken just before its shard is read, and taken again
 * after the last record read when it expired.
 */
async function shardIterator(o, s) {
  const start = s.last ? { ShardIteratorType: 'AFTER_SEQUENCE_NUMBER', StartingSequenceNumber: s.last }
    : { ShardIteratorType: 'TRIM_HORIZON' };
  return ok(await kc.callRetry(o.endpoint, 'GetShardIterator', { StreamName: s.stream, ShardId: s.shard, ...start }, o),
    'GetShardIterator').ShardIterator;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const deadline = Date.now() + o.timeoutMs;
  const streams = o.stream.split(',');
  const state = [];
  for (const stream of streams) {
    for (const s of await listShards(o, stream)) {
      state.push({ stream, shard: s.ShardId, shardId: streams.length > 1 ? `${stream}/${s.ShardId}` : s.ShardId,
        iterator: undefined, last: null, out: [] });
    }
  }
  let total = 0;
  for (;;) {
    for (const s of state) {
      while (s.iterator !== null) {          /* null: the shard is closed and read to its end */
        if (s.iterator === undefined) s.iterator = await shardIterator(o, s);
        const reply = await kc.callRetry(o.endpoint, 'GetRecords', { ShardIterator: s.iterator, Limit: 10000 }, o);
        if (reply.status === 400 && reply.body && /ExpiredIterator/.test(String(reply.body.__type))) {
          s.iterator = undefined;
          continue;
        }
        const body = ok(reply, 'GetRecords');
        s.iterator = body.NextShardIterator || null;
        for (const r of body.Records) {
          s.last = r.SequenceNumber;
          const base = { shardId: s.shardId, sequenceNumber: r.SequenceNumber,
            arrival: Math.round(Number(r.ApproximateArrivalTimestamp) * 1000) };
          const isAgg = Buffer.from(r.Data.slice(0, 8), 'base64').subarray(0, 4).toString('hex') === 'f3899ac2';
          if (o.deaggregate && isAgg) {
            const users = await deaggregate(r);
            users.forEach((u, i) => s.out.push({ ...base, partitionKey: u.partitionKey, data: u.data,
              subSequenceNumber: i, aggregated: true }));
            total += users.length;
          } else {
            s.out.push({ ...base, partitionKey: r.PartitionKey, data: r.Data });
            total++;
          }
        }
        if (body.Records.length === 0 && (body.MillisBehindLatest === 0 || body.MillisBehindLatest == null)) break;
      }
    }
    if (total >= o.expect) break;
    if (Date.now() > deadline) {
      process.stderr.write(`kinesis_read: ${total} records, expected ${o.expect}, timed out\n`);
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (o.count) {
    process.stdout.write(`${total}\n`);
  } else {
    const lines = [];
    for (const s of state) for (const r of s.out) lines.push(JSON.stringify(r));
    if (lines.length) process.stdout.write(lines.join('\n') + '\n');
  }
  return total >= o.expect ? 0 : 3;
}

// Exit only once stdout is drained: process.exit() may cut a large output written to a pipe.
main().then((rc) => process.stdout.write('', () => process.exit(rc)), (e) => {
  process.stderr.write(`kinesis_read: ${e.message}\n`);
  process.exit(1);
});
