#!/usr/bin/env node
// The report at the end of `make demo`: what arrived in Kinesis against what the simulated function
// emitted, and what the simulator measured (cold start, per-invocation overhead, memory, shutdown).
// Usage: node report.js --summary S.json --records R.jsonl --ids IDS.txt [--dropped-ids D.txt] [--layer-zip Z]
//            [--emf E.json]
//   R.jsonl: tests/tools/kinesis_read.js output (--deaggregate), one Kinesis (user) record per line.
//   E.json: tests/e2e/check_emf.js output: the extension's own metrics (its EMF lines), summed; printed
//   beside the same figures read back from Kinesis and measured by the simulator.
// Exit 0 when every emitted function log line arrived, 1 otherwise.
'use strict';

const fs = require('fs');

function args(argv) {
  const o = {};
  for (let i = 2; i < argv.length; i += 2) o[argv[i].replace(/^--/, '')] = argv[i + 1];
  for (const k of ['summary', 'records', 'ids'])
    if (!o[k]) throw new Error(`--${k} is required`);
  return o;
}

const fmtMs = (v) => (v === null || v === undefined ? 'n/a' : `${Number(v).toFixed(2)} ms`);
const fmtBytes = (n) => (n >= 1048576 ? `${(n / 1048576).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
const clip = (s, n) => (s.length > n ? `${s.slice(0, n - 3)}...` : s);

// Every telemetry event in the records: a record holds one event (event format), several separated by
// newlines (ndjson), or is a KPL user record already de-aggregated by kinesis_read.js.
function eventsOf(records) {
  const events = [];
  let unparsed = 0;
  for (const r of records) {
    const data = Buffer.from(r.data, 'base64').toString('utf8');
    for (const line of data.split('\n')) {
      if (line.trim() === '') continue;
      try {
        events.push({ ev: JSON.parse(line), raw: line, pkey: r.partitionKey });
      } catch (e) {
        unparsed++;
        events.push({ ev: null, raw: line, pkey: r.partitionKey });
      }
    }
  }
  return { events, unparsed };
}

function main() {
  const o = args(process.argv);
  const s = JSON.parse(fs.readFileSync(o.summary, 'utf8'));
  const records = fs.readFileSync(o.records, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const emitted = fs.readFileSync(o.ids, 'utf8').split('\n').filter(Boolean);
  const { events, unparsed } = eventsOf(records);
  const out = [];
  const p = (...a) => out.push(a.join(''));

  const bytes = records.reduce((n, r) => n + Buffer.from(r.data, 'base64').length, 0);
  const shards = new Set(records.map((r) => r.shardId));
  const pkeys = new Set(records.map((r) => r.partitionKey));
  const aggregated = records.filter((r) => r.aggregated).length;
  const kinesisRecords = new Set(records.map((r) => `${r.shardId}/${r.sequenceNumber}`)).size;
  p(`Kinesis: ${kinesisRecords} records${aggregated ? ` (${records.length} user records after KPL de-aggregation)` : ''}, `,
    `${fmtBytes(bytes)} of data, ${shards.size} shard(s), ${pkeys.size} partition key(s)`);
  p(`Events in them: ${events.length}${unparsed ? ` (${unparsed} not JSON!)` : ''}`);

  // Events per type: arrived vs emitted by the simulator.
  const arrived = {};
  for (const { ev } of events) {
    const t = ev && ev.type ? ev.type : '(unparsed)';
    arrived[t] = (arrived[t] || 0) + 1;
  }
  const emittedTypes = s.events_emitted || {};
  const types = [...new Set([...Object.keys(emittedTypes), ...Object.keys(arrived)])].sort();
  p('');
  p('  event type                       emitted  arrived');
  for (const t of types)
    p(`  ${t.padEnd(32)} ${String(emittedTypes[t] ?? '-').padStart(7)}  ${String(arrived[t] || 0).padStart(7)}`);

  // Function log lines: each carries a unique id (kte-id=...).
  const seen = new Map();
  for (const { raw } of events)
    for (const m of raw.matchAll(/kte-id=([A-Za-z0-9_.:-]+)/g)) seen.set(m[1], (seen.get(m[1]) || 0) + 1);
  // Lines the simulator itself dropped (its buffer overflowed, as Lambda's does; reported to the
  // extension in platform.logsDropped) cannot arrive: they are not the extension's losses.
  const lambdaDropped = new Set(o['dropped-ids'] && fs.existsSync(o['dropped-ids'])
    ? fs.readFileSync(o['dropped-ids'], 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ').pop()) : []);
  const missing = emitted.filter((id) => !seen.has(id) && !lambdaDropped.has(id));
  const dups = [...seen.values()].filter((n) => n > 1).length;
  p('');
  p(`Function log lines: emitted ${emitted.length}, arrived ${emitted.filter((id) => seen.has(id)).length}, `,
    `dropped by Lambda ${lambdaDropped.size}, missing ${missing.length}, duplicated ${dups}`,
    `${missing.length ? ` (first missing: ${missing.slice(0, 5).join(', ')})` : ''}`);

  // The extension's own metrics (what CloudWatch would show) against what Kinesis and the simulator say.
  let metricsAgree = true;
  if (o.emf && fs.existsSync(o.emf)) {
    const e = JSON.parse(fs.readFileSync(o.emf, 'utf8'));
    const m = e.sums || {};
    const eventBytes = events.reduce((n, x) => n + Buffer.byteLength(x.raw), 0);
    const tel0 = s.telemetry || {};
    const inv = s.invocations || {};
    p('');
    p(`The extension's own metrics: ${e.lines} CloudWatch EMF line(s) on its stdout (${fmtBytes(e.bytes)}, `,
      `${inv.completed ? Math.round(e.bytes / inv.completed) : e.bytes} B per invocation), summed:`);
    p('  metric (EMF)                   extension   measured elsewhere');
    const row = (name, value, other, where) => {
      const ok = other === undefined || other === null || value === other;
      if (!ok) metricsAgree = false;
      p(`  ${name.padEnd(30)} ${String(value ?? '-').padStart(9)}   ${other === undefined ? '' :
        `${String(other).padStart(9)} ${where}${ok ? '' : '  <- DIFFERS'}`}`);
    };
    row('Invocations', m.Invocations, inv.completed, 'completed (simulator)');
    row('EventsReceived', m.EventsReceived, tel0.events, 'delivered by the Telemetry API (simulator)');
    row('EventsSent', m.EventsSent, events.length, 'events read back from Kinesis');
    row('RecordsSent', m.RecordsSent, kinesisRecords, 'Kinesis records read back');
    row('BytesSent', m.BytesSent, eventBytes, 'bytes of those events');
    row('EventsDropped', m.EventsDropped, undefined);
    row('  DroppedByLambda', m.DroppedByLambda, ((tel0.logs_dropped || {}).records) ?? undefined,
      'records Lambda reported dropping (simulator)');
    row('  DroppedTooLarge / Rejected', (m.DroppedTooLarge || 0) + (m.DroppedRejected || 0), undefined);
    row('  DroppedAtShutdown', m.DroppedAtShutdown, undefined);
    row('RecordsRetried', m.RecordsRetried, undefined);
    const mx = e.max || {};
    p(`  arrival -> acknowledgement    p50 up to ${mx.AckLatencyP50 ?? '-'} ms, max ${mx.AckLatencyMax ?? '-'} ms `,
      '(highest per line)');
    p(`  ring high-water               ${mx.RingHighWater ?? '-'} % (${fmtBytes(mx.RingHighWaterBytes || 0)})`);
    p(`  next held after the runtime   ${m.NextHoldTime ?? '-'} ms in ${m.NextHolds ?? '-'} invocation(s)`);
    p(metricsAgree ? '  The extension\'s metrics agree with what Kinesis holds and the simulator delivered.'
      : '  PROBLEM: the extension\'s metrics disagree with the figures measured elsewhere.');
  }

  // A few sample records.
  p('');
  p('Sample events:');
  for (const t of ['platform.initStart', 'platform.start', 'function', 'platform.runtimeDone', 'platform.report', 'extension']) {
    const e = events.find((x) => x.ev && x.ev.type === t);
    if (e) p(`  [key ${clip(String(e.pkey), 36)}] ${clip(e.raw, 230)}`);
  }

  // What the simulator measured.
  const cs = s.cold_start || {};
  const ext = (cs.extensions || [])[0] || {};
  const oh = s.overhead_ms || {};
  const mem = s.memory || {};
  const sd = ((s.shutdown || {}).extensions || [])[0] || {};
  const tel = s.telemetry || {};
  p('');
  p(`Invocations: ${(s.invocations || {}).completed}/${(s.invocations || {}).requested} completed, result ${s.result}`);
  p(`Cold start: exec -> register ${fmtMs(ext.exec_to_register_ms)}, -> subscribe ${fmtMs(ext.exec_to_subscribe_ms)}, `,
    `-> first next ${fmtMs(ext.exec_to_first_next_ms)} (whole init ${fmtMs(cs.init_ms)})`);
  p(`Per-invocation overhead (platform.runtimeDone -> extension's next call): p50 ${fmtMs(oh.p50)}, `,
    `p99 ${fmtMs(oh.p99)}, max ${fmtMs(oh.max)} over ${oh.count} invocations`);
  p(`Telemetry API delivery to the extension: ${tel.events} events in ${tel.batches} POSTs, failures ${tel.failures}, `,
    `reply latency p50 ${fmtMs((tel.reply_latency_ms || {}).p50)} p99 ${fmtMs((tel.reply_latency_ms || {}).p99)}`);
  p(`Memory of the extension's processes: Pss ${mem.pss_kb_max} kB max, peak RSS ${mem.peak_rss_kb} kB (${mem.processes} processes)`);
  p(`Shutdown: exit after ${fmtMs(sd.time_to_exit_ms)}${sd.killed ? ', KILLED at the deadline' : ''}, status ${sd.exit_status ?? sd.signal}`);
  if (o['layer-zip'] && fs.existsSync(o['layer-zip']))
    p(`Layer: ${o['layer-zip']} ${fmtBytes(fs.statSync(o['layer-zip']).size)}`);
  const lostPlatform = Object.keys(emittedTypes).filter((t) => t.startsWith('platform.') && (arrived[t] || 0) < emittedTypes[t]);
  if ((arrived.extension || 0) < (emittedTypes.extension || 0))
    p('Note: the extension\'s own last log lines (written while it shuts down, after its final flush) cannot ',
      'reach Kinesis; that is why fewer "extension" events arrive than were emitted.');
  if (oh.p50 > 20)
    p(`Note: the overhead includes waiting for this invocation's telemetry to be acknowledged by Kinesis when the `,
      `flush policy flushes at the end of an invocation (adaptive does so for the first invocations); kinesis-mock `,
      `answers far slower than Kinesis.`);
  p('');
  const good = missing.length === 0 && emitted.length > 0 && unparsed === 0 && s.result === 'ok' &&
    lostPlatform.length === 0 && metricsAgree;
  if (lostPlatform.length) p(`Platform events missing: ${lostPlatform.join(', ')}`);
  p(good ? 'RESULT: every function log line and platform event made it to Kinesis.'
    : 'RESULT: PROBLEM: see the counts above.');
  console.log(out.map((l) => (l === '' ? '' : `[demo]   ${l}`)).join('\n'));
  return good ? 0 : 1;
}

process.exit(main());
