#!/usr/bin/env node
/*
 * kpl_deagg.js: de-aggregates KPL aggregated records with the real aws-kinesis-agg
 * package (tests/node/node_modules, installed by `make deps`), checksums verified.
 *
 * Usage: node tests/tools/kpl_deagg.js [--pkey KEY] FILE...
 *   Each FILE holds the data of one Kinesis record (raw bytes, as PutRecords sent
 *   them before base64). Prints one JSON line per FILE:
 *     {"file":F,"aggregated":true,"records":[{"partitionKey":K,"data":"<base64>"},...]}
 *   or {"file":F,"error":"message"} when de-aggregation fails (bad checksum, bad
 *   protobuf). "aggregated" is false when the bytes do not start with the KPL magic
 *   (the package then passes the record through unchanged).
 * Exit status 0 unless the arguments are wrong.
 */
'use strict';
const fs = require('fs');
const path = require('path');
const agg = require(path.join(__dirname, '..', 'node', 'node_modules', 'aws-kinesis-agg'));

const MAGIC = Buffer.from('f3899ac2', 'hex');
let pkey = 'outer';
const files = [];
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === '--pkey' && i + 1 < argv.length) pkey = argv[++i];
  else files.push(argv[i]);
}
if (files.length === 0) {
  process.stderr.write('usage: kpl_deagg.js [--pkey KEY] FILE...\n');
  process.exit(2);
}

function deaggregate(buf, partitionKey) {
  return new Promise((resolve) => {
    const rec = { partitionKey, sequenceNumber: '1', data: buf.toString('base64') };
    agg.deaggregateSync(rec, true, (err, recs) => resolve({ err, recs }));
  });
}

(async () => {
  const out = [];
  for (const f of files) {
    const buf = fs.readFileSync(f);
    const { err, recs } = await deaggregate(buf, pkey);
    if (err) {
      out.push(JSON.stringify({ file: f, error: String(err && err.message ? err.message : err) }));
      continue;
    }
    out.push(JSON.stringify({
      file: f,
      aggregated: buf.length >= 4 && buf.subarray(0, 4).equals(MAGIC),
      records: recs.map((r) => ({ partitionKey: r.partitionKey, data: r.data })),
    }));
  }
  process.stdout.write(out.join('\n') + '\n');
})();
