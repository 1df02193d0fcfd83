#!/usr/bin/env node
/*
 * kinesis_client.js: a minimal Kinesis JSON 1.1 client for tests (Node built-ins
 * only), usable as a module and from the shell. It talks to kinesis-mock, which
 * needs an Authorization header but does not check signatures, so the header is a
 * well-formed dummy whose credential scope carries the region.
 *
 * Module:  const kc = require('./kinesis_client');
 *          await kc.call(endpoint, 'DescribeStreamSummary', {StreamName: 's'}, {region});
 *          -> {status, body (parsed JSON or null), raw}
 * Shell:   node tests/tools/kinesis_client.js --endpoint URL [--region R] CMD [ARGS]
 *   wait-active STREAM [TIMEOUT_MS]   poll DescribeStreamSummary until ACTIVE (exit 1 on timeout)
 *   create STREAM SHARDS              CreateStream, then wait-active
 *   call TARGET JSON                  any operation (e.g. call ListShards '{"StreamName":"s"}'),
 *                                     prints "<status> <body>"
 *   put STREAM PKEY DATA...           PutRecords of the given UTF-8 strings, prints the reply
 */
'use strict';
const http = require('http');
const https = require('https');

const agents = { 'http:': new http.Agent({ keepAlive: true }), 'https:': new https.Agent({ keepAlive: true }) };

function amzDate(d) {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

/* One Kinesis call. Resolves {status, body, raw}; rejects on connection errors. */
function call(endpoint, target, payload, opts = {}) {
  const region = opts.region || process.env.AWS_REGION || 'us-east-1';
  const akid = opts.accessKeyId || '000000000000';
  const url = new URL(endpoint);
  const data = Buffer.from(JSON.stringify(payload));
  const date = amzDate(new Date());
  const headers = {
    'Content-Type': 'application/x-amz-json-1.1',
    'X-Amz-Target': 'Kinesis_20131202.' + target,
    'X-Amz-Date': date,
    Authorization: `AWS4-HMAC-SHA256 Credential=${akid}/${date.slice(0, 8)}/${region}/kinesis/aws4_request, ` +
      'SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=' + '0'.repeat(64),
    'Content-Length': data.length,
  };
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request({
      host: url.hostname, port: url.port, path: '/', method: 'POST', headers,
      agent: agents[url.protocol], rejectUnauthorized: false, timeout: opts.timeoutMs || 30000,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        let body = null;
        try { body = raw ? JSON.parse(raw) : null; } catch (e) { body = null; }
        resolve({ status: res.statusCode, body, raw });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Polls until the stream is ACTIVE; resolves true, or false after timeoutMs. */
async function waitActive(endpoint, stream, timeoutMs = 30000, opts = {}) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    try {
      const r = await call(endpoint, 'DescribeStreamSummary', { StreamName: stream }, opts);
      if (r.status === 200 && r.body && r.body.StreamDescriptionSummary &&
          r.body.StreamDescriptionSummary.StreamStatus === 'ACTIVE') return true;
    } catch (e) { /* not listening yet */ }
    await sleep(50);
  }
  return false;
}

/* Calls with retries on throttling / 5xx / connection errors (for readers and setup). */
async function callRetry(endpoint, target, payload, opts = {}) {
  let delay = 50;
  for (let attempt = 0; ; attempt++) {
    let r;
    try {
      r = await call(endpoint, target, payload, opts);
    } catch (e) {
      if (attempt >= 20) throw e;
      await sleep(delay); delay = Math.min(delay * 2, 1000);
      continue;
    }
    const type = r.body && r.body.__type ? String(r.body.__type) : '';
    const retryable = r.status >= 500 || /Throttling|ProvisionedThroughputExceeded|LimitExceeded/.test(type);
    if (!retryable || attempt >= 20) return r;
    await sleep(delay); delay = Math.min(delay * 2, 1000);
  }
}

module.exports = { call, callRetry, waitActive, amzDate };

async function main(argv) {
  let endpoint = process.env.KINESIS_ENDPOINT || '';
  const opts = {};
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--endpoint') endpoint = argv[++i];
    else if (argv[i] === '--region') opts.region = argv[++i];
    else rest.push(argv[i]);
  }
  const [cmd, ...args] = rest;
  if (!endpoint || !cmd) {
    process.stderr.write('usage: kinesis_client.js --endpoint URL [--region R] ' +
      'wait-active|create|call|put ...\n');
    return 2;
  }
  if (cmd === 'wait-active') {
    return (await waitActive(endpoint, args[0], Number(args[1] || 30000), opts)) ? 0 : 1;
  }
  if (cmd === 'create') {
    const r = await callRetry(endpoint, 'CreateStream', { StreamName: args[0], ShardCount: Number(args[1] || 1) }, opts);
    if (r.status !== 200) { process.stderr.write(`CreateStream: ${r.status} ${r.raw}\n`); return 1; }
    return (await waitActive(endpoint, args[0], 30000, opts)) ? 0 : 1;
  }
  if (cmd === 'call') {
    const r = await call(endpoint, args[0], JSON.parse(args[1] || '{}'), opts);
    process.stdout.write(`${r.status} ${r.raw}\n`);
    return r.status === 200 ? 0 : 1;
  }
  if (cmd === 'put') {
    const [stream, pkey, ...datas] = args;
    const r = await call(endpoint, 'PutRecords', {
      StreamName: stream,
      Records: datas.map((d) => ({ Data: Buffer.from(d).toString('base64'), PartitionKey: pkey })),
    }, opts);
    process.stdout.write(`${r.status} ${r.raw}\n`);
    return r.status === 200 ? 0 : 1;
  }
  process.stderr.write(`unknown command ${cmd}\n`);
  return 2;
}

if (require.main === module) {
  main(process.argv.slice(2)).then((rc) => process.stdout.write('', () => process.exit(rc)), (e) => {
    process.stderr.write(`kinesis_client: ${e.message}\n`);
    process.exit(1);
  });
}
