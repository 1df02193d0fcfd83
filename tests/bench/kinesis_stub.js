#!/usr/bin/env node
/*
 * kinesis_stub.js: a minimal, fast stand-in for Kinesis PutRecords, for benchmarks
 * that must not measure kinesis-mock's own slowness (tens of ms per request). It
 * accepts every record of every PutRecords request and answers at once; it checks
 * nothing (no signature, no stream). Usage: node kinesis_stub.js PORTFILE
 * It listens on a free 127.0.0.1 port, writes the port to PORTFILE, and counts
 * requests and records, printed on SIGTERM.
 */
'use strict';
const http = require('http');
const fs = require('fs');
let requests = 0, records = 0;
const srv = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', c => chunks.push(c));
  req.on('end', () => {
    const target = req.headers['x-amz-target'] || '';
    if (!target.endsWith('.PutRecords')) {
      res.writeHead(400, { 'Content-Type': 'application/x-amz-json-1.1' });
      res.end('{"__type":"UnknownOperationException"}');
      return;
    }
    let n = 0;
    try {
      n = JSON.parse(Buffer.concat(chunks).toString('utf8')).Records.length;
    } catch (e) {
      res.writeHead(400, { 'Content-Type': 'application/x-amz-json-1.1' });
      res.end('{"__type":"SerializationException"}');
      return;
    }
    requests++;
    records += n;
    const out = [];
    for (let i = 0; i < n; i++)
      out.push({ SequenceNumber: String(records - n + i + 1).padStart(20, '0'), ShardId: 'shardId-000000000000' });
    const body = JSON.stringify({ FailedRecordCount: 0, Records: out });
    res.writeHead(200, { 'Content-Type': 'application/x-amz-json-1.1', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
});
srv.keepAliveTimeout = 60000;
srv.listen(0, '127.0.0.1', () => fs.writeFileSync(process.argv[2], String(srv.address().port)));
process.on('SIGTERM', () => {
  process.stderr.write(`kinesis_stub: ${requests} requests, ${records} records\n`);
  process.exit(0);
});
