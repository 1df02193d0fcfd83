#!/usr/bin/env node
/*
 * check_ids.js: the end-to-end account of one run. Every function log record the
 * Lambda simulator emitted carries a unique id (`kte-id=<id> `, written to its --ids
 * file); this reads the stream back (kinesis_read.js output, --deaggregate for kpl)
 * and checks that each id arrived, how often, and that nothing else claiming an id
 * arrived.
 *
 * Usage: node tests/e2e/check_ids.js --ids FILE [--actual FILE] [--split-lines]
 *            [--max-duplicate-records N] [--expect-missing N] [--allow-missing M] [--quiet]
 *   --ids FILE        the simulator's --ids output (one id a line)
 *   --actual FILE     kinesis_read.js JSON lines (default stdin)
 *   --split-lines     each record holds newline-delimited events (the ndjson format)
 *   --max-duplicate-records N
 *                     how many Kinesis records (outer records, by shard and sequence
 *                     number) may carry ids already seen in another record (default 0)
 *   --expect-missing N
 *                     exactly N ids must be missing (Lambda reported dropping them:
 *                     platform.logsDropped); default 0. emitted = arrived + N.
 *   --allow-missing M up to M more may be missing (events the extension itself reported
 *                     as not sent, e.g. still in the ring at the shutdown deadline)
 * Prints one JSON line: {emitted, arrived, missing, unexpected, duplicates (extra
 * copies of events), duplicateRecords, records (Kinesis records), events (user
 * records), types {type: count}, dropped (sum of the extension.kte.dropped records'
 * counts), droppedEvents (how many such records)}; lists a few missing and unexpected
 * ids on stderr. Exit status 0 when the account holds, 1 when it does not, 2 on usage.
 */
'use strict';
const fs = require('fs');
const readline = require('readline');

function usage(msg) {
  if (msg) process.stderr.write(`check_ids: ${msg}\n`);
  process.stderr.write('usage: check_ids.js --ids FILE [--actual FILE] [--split-lines] ' +
    '[--max-duplicate-records N] [--expect-missing N] [--allow-missing M] [--quiet]\n');
  process.exit(2);
}

const o = { ids: null, actual: null, split: false, maxDup: 0, expectMissing: 0, allowMissing: 0, quiet: false };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const val = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
  const num = () => { const v = Number(val()); if (!Number.isInteger(v) || v < 0) usage(`${a}: integer >= 0`); return v; };
  if (a === '--ids') o.ids = val();
  else if (a === '--actual') o.actual = val();
  else if (a === '--split-lines') o.split = true;
  else if (a === '--max-duplicate-records') o.maxDup = num();
  else if (a === '--expect-missing') o.expectMissing = num();
  else if (a === '--allow-missing') o.allowMissing = num();
  else if (a === '--quiet') o.quiet = true;
  else usage(`unknown argument ${a}`);
}
if (!o.ids) usage('--ids is required');

const emitted = fs.readFileSync(o.ids, 'utf8').split('\n').filter(Boolean);
const want = new Set(emitted);
if (want.size !== emitted.length) usage(`${o.ids}: ids are not unique`);

const seenIn = new Map();            /* id -> key of the first record that carried it */
const count = new Map();             /* id -> copies */
const unexpected = [];
const types = {};
const dropped = {};
let records = 0, events = 0, droppedEvents = 0;
const dupRecords = new Set();
const ID_RE = /kte-id=([^ "\\]+) /g;

function onEvent(text, key) {
  events++;
  let ev = null;
  try { ev = JSON.parse(text); } catch (e) { ev = null; }
  const type = ev && typeof ev.type === 'string' ? ev.type : '(not JSON)';
  types[type] = (types[type] || 0) + 1;
  if (type === 'extension.kte.dropped' && ev.record && typeof ev.record === 'object') {
    droppedEvents++;
    for (const [k, v] of Object.entries(ev.record)) if (typeof v === 'number') dropped[k] = (dropped[k] || 0) + v;
  }
  for (const m of text.matchAll(ID_RE)) {
    const id = m[1];
    if (!want.has(id)) { unexpected.push(id); continue; }
    const n = (count.get(id) || 0) + 1;
    count.set(id, n);
    if (n === 1) seenIn.set(id, key);
    else if (seenIn.get(id) !== key) dupRecords.add(key);
  }
}

const rl = readline.createInterface({ input: o.actual ? fs.createReadStream(o.actual) : process.stdin,
  crlfDelay: Infinity });
rl.on('line', (line) => {
  if (!line.trim()) return;
  const r = JSON.parse(line);
  records++;
  const key = `${r.shardId}/${r.sequenceNumber}`;
  const data = Buffer.from(r.data, 'base64').toString('utf8');
  if (o.split) {
    const parts = data.split('\n');
    if (parts.length && parts[parts.length - 1] === '') parts.pop();
    for (const p of parts) onEvent(p, key);
  } else {
    onEvent(data, key);
  }
});
rl.on('close', () => {
  const missing = emitted.filter((id) => !count.has(id));
  let duplicates = 0;
  for (const n of count.values()) duplicates += n - 1;
  const res = {
    emitted: emitted.length, arrived: count.size, missing: missing.length, unexpected: unexpected.length,
    duplicates, duplicateRecords: dupRecords.size, records, events, types, dropped, droppedEvents,
  };
  console.log(JSON.stringify(res));
  const problems = [];
  if (missing.length < o.expectMissing || missing.length > o.expectMissing + o.allowMissing) {
    problems.push(`${missing.length} id(s) missing, expected ${o.expectMissing}` +
      (o.allowMissing ? ` to ${o.expectMissing + o.allowMissing}` : '') +
      (missing.length ? ` (e.g. ${missing.slice(0, 10).join(' ')})` : ''));
  }
  if (unexpected.length) problems.push(`${unexpected.length} unexpected id(s) (e.g. ${unexpected.slice(0, 10).join(' ')})`);
  if (dupRecords.size > o.maxDup) {
    problems.push(`${dupRecords.size} Kinesis record(s) carry duplicates (${duplicates} extra events), ` +
      `allowed ${o.maxDup}`);
  }
  if (!o.quiet) for (const p of problems) process.stderr.write(`check_ids: ${p}\n`);
  process.exit(problems.length ? 1 : 0);
});
