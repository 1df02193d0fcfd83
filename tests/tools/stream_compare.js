#!/usr/bin/env node
/*
 * stream_compare.js: checks that what a stream holds is exactly what was sent:
 * nothing missing, nothing unexpected, and duplicates only within the allowance
 * (records whose acknowledgement was lost, e.g. the fault proxy's records.ackDropped).
 *
 * Usage: node tests/tools/stream_compare.js --expected FILE [--actual FILE]
 *            [--expected-base64] [--split-lines] [--max-duplicate-records N] [--quiet]
 *   --expected FILE   one expected user record per line (raw UTF-8 text; with
 *                     --expected-base64, base64 of the bytes)
 *   --actual FILE     kinesis_read.js output (JSON lines); default stdin. Use
 *                     kinesis_read.js --deaggregate for the kpl record format.
 *   --split-lines     each actual record holds newline-delimited user records (the
 *                     ndjson record format): split them (a final empty piece is ignored)
 *   --max-duplicate-records N
 *                     how many Kinesis records (outer records, by sequence number) may
 *                     carry user records already seen elsewhere (default 0)
 * Prints a JSON summary on stdout: {expected, actual, missing, unexpected, duplicates,
 * duplicateRecords}; lists up to 10 missing / unexpected items on stderr.
 * Exit status 0 when missing = unexpected = 0 and duplicateRecords <= N, else 1.
 */
'use strict';
const fs = require('fs');

function parseArgs(argv) {
  const o = { maxDup: 0 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--expected') o.expected = argv[++i];
    else if (a === '--actual') o.actual = argv[++i];
    else if (a === '--expected-base64') o.expectedB64 = true;
    else if (a === '--split-lines') o.split = true;
    else if (a === '--max-duplicate-records') o.maxDup = Number(argv[++i]);
    else if (a === '--quiet') o.quiet = true;
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.expected) throw new Error('--expected FILE is required');
  return o;
}

function lines(text) {
  const l = text.split('\n');
  if (l.length && l[l.length - 1] === '') l.pop();
  return l;
}

function main() {
  const o = parseArgs(process.argv.slice(2));
  /* Keys are base64 of the bytes, so binary records compare exactly. */
  const expected = new Map();
  let nexp = 0;
  for (const l of lines(fs.readFileSync(o.expected, 'utf8'))) {
    const k = o.expectedB64 ? Buffer.from(l, 'base64').toString('base64') : Buffer.from(l, 'utf8').toString('base64');
    expected.set(k, (expected.get(k) || 0) + 1);
    nexp++;
  }
  const seen = new Map();
  const dupOuter = new Set();
  let nact = 0;
  let duplicates = 0;
  const unexpected = [];
  for (const l of lines(fs.readFileSync(o.actual || 0, 'utf8'))) {
    const r = JSON.parse(l);
    const outer = `${r.shardId}/${r.sequenceNumber}`;
    let pieces = [Buffer.from(r.data, 'base64')];
    if (o.split) {
      const text = pieces[0];
      pieces = [];
      let start = 0;
      for (let i = 0; i <= text.length; i++) {
        if (i === text.length || text[i] === 0x0a) {
          if (i > start || i < text.length) pieces.push(text.subarray(start, i));
          start = i + 1;
        }
      }
    }
    for (const p of pieces) {
      const k = p.toString('base64');
      nact++;
      const n = (seen.get(k) || 0) + 1;
      seen.set(k, n);
      const want = expected.get(k) || 0;
      if (want === 0) unexpected.push(k);
      else if (n > want) { duplicates++; dupOuter.add(outer); }
    }
  }
  const missing = [];
  for (const [k, want] of expected) {
    const got = seen.get(k) || 0;
    for (let i = got; i < want; i++) missing.push(k);
  }
  const summary = { expected: nexp, actual: nact, missing: missing.length, unexpected: unexpected.length,
    duplicates, duplicateRecords: dupOuter.size };
  process.stdout.write(JSON.stringify(summary) + '\n');
  if (!o.quiet) {
    const show = (k) => JSON.stringify(Buffer.from(k, 'base64').toString('utf8').slice(0, 120));
    for (const k of missing.slice(0, 10)) process.stderr.write(`missing: ${show(k)}\n`);
    for (const k of unexpected.slice(0, 10)) process.stderr.write(`unexpected: ${show(k)}\n`);
  }
  return missing.length === 0 && unexpected.length === 0 && dupOuter.size <= o.maxDup ? 0 : 1;
}

try {
  process.exit(main());
} catch (e) {
  process.stderr.write(`stream_compare: ${e.message}\n`);
  process.exit(2);
}
