#!/usr/bin/env node
/*
 * check_emf.js: finds the extension's CloudWatch embedded metric format (EMF) lines in a
 * simulator log (extension output is echoed there as "[name] line") or in plain stdout,
 * checks each against the EMF specification's structure, and sums them.
 *
 * Usage: node tests/e2e/check_emf.js FILE [--namespace NS] [--function NAME]
 * Each EMF line must be one JSON object with _aws {Timestamp (epoch ms), CloudWatchMetrics:
 * [{Namespace, Dimensions: [[key...]...], Metrics: [{Name, Unit}...]}]} (at most 100 metrics
 * per directive, 30 keys per dimension set), every dimension key a string member of the
 * root and every metric a number member of it, and no other line may look like EMF.
 * Prints one JSON line: {lines, bytes, firstMs, lastMs, sums {metric: total}, max {metric:
 * largest value}, lineMetrics [per line {metric: value}]}. Exit 0 when every line is
 * valid, 1 otherwise (problems on stderr), 2 on usage.
 */
'use strict';
const fs = require('fs');

const args = process.argv.slice(2);
if (args.length < 1) {
  process.stderr.write('usage: check_emf.js FILE [--namespace NS] [--function NAME]\n');
  process.exit(2);
}
const opt = { file: args[0], namespace: null, fn: null };
for (let i = 1; i < args.length; i++) {
  if (args[i] === '--namespace') opt.namespace = args[++i];
  else if (args[i] === '--function') opt.fn = args[++i];
  else { process.stderr.write(`check_emf: unknown argument ${args[i]}\n`); process.exit(2); }
}

const UNITS = new Set(['Seconds', 'Microseconds', 'Milliseconds', 'Bytes', 'Kilobytes', 'Megabytes', 'Gigabytes',
  'Terabytes', 'Bits', 'Kilobits', 'Megabits', 'Gigabits', 'Terabits', 'Percent', 'Count', 'Bytes/Second',
  'Kilobytes/Second', 'Megabytes/Second', 'Gigabytes/Second', 'Terabytes/Second', 'Bits/Second',
  'Kilobits/Second', 'Megabits/Second', 'Gigabits/Second', 'Terabits/Second', 'Count/Second', 'None']);
const problems = [];
const out = { lines: 0, bytes: 0, firstMs: null, lastMs: null, sums: {}, max: {}, lineMetrics: [] };

function check(o, n) {
  const bad = (m) => problems.push(`line ${n}: ${m}`);
  const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (!isObj(o) || !isObj(o._aws)) return bad('no _aws object');
  const aws = o._aws;
  if (!Number.isInteger(aws.Timestamp) || aws.Timestamp < 1.6e12) bad('_aws.Timestamp is not epoch ms');
  if (!Array.isArray(aws.CloudWatchMetrics) || aws.CloudWatchMetrics.length < 1) return bad('no CloudWatchMetrics');
  const values = {};
  for (const d of aws.CloudWatchMetrics) {
    if (typeof d.Namespace !== 'string' || d.Namespace.length < 1 || d.Namespace.length > 255) bad('bad Namespace');
    if (opt.namespace !== null && d.Namespace !== opt.namespace) bad(`Namespace ${d.Namespace}, expected ${opt.namespace}`);
    if (!Array.isArray(d.Dimensions)) bad('Dimensions is not an array');
    for (const set of d.Dimensions || []) {
      if (!Array.isArray(set) || set.length > 30) { bad('a dimension set is not an array of at most 30'); continue; }
      for (const k of set) if (typeof o[k] !== 'string' || o[k] === '') bad(`dimension ${k} is not a string member`);
    }
    if (!Array.isArray(d.Metrics) || d.Metrics.length < 1 || d.Metrics.length > 100) bad('Metrics: 1 to 100 expected');
    for (const m of d.Metrics || []) {
      if (typeof m.Name !== 'string' || m.Name === '') { bad('a metric without a Name'); continue; }
      if (m.Unit !== undefined && !UNITS.has(m.Unit)) bad(`${m.Name}: unit ${m.Unit} is not a CloudWatch unit`);
      if (typeof o[m.Name] !== 'number' || !Number.isFinite(o[m.Name])) bad(`${m.Name} declared, but no number member`);
      values[m.Name] = o[m.Name];
    }
  }
  if (opt.fn !== null && o.FunctionName !== opt.fn) bad(`FunctionName ${o.FunctionName}, expected ${opt.fn}`);
  for (const [k, v] of Object.entries(values)) {
    out.sums[k] = (out.sums[k] || 0) + v;
    out.max[k] = Math.max(out.max[k] === undefined ? v : out.max[k], v);
  }
  out.lineMetrics.push(values);
  if (out.firstMs === null) out.firstMs = aws.Timestamp;
  out.lastMs = aws.Timestamp;
}

let n = 0;
for (let line of fs.readFileSync(opt.file, 'utf8').split('\n')) {
  n++;
  const m = /^\[[^\]]+\] (.*)$/.exec(line);
  if (m) line = m[1];
  if (!line.includes('"_aws"')) continue;
  out.lines++;
  out.bytes += Buffer.byteLength(line) + 1;
  let o;
  try {
    o = JSON.parse(line);
  } catch (e) {
    problems.push(`line ${n}: not JSON (${e.message}): ${line.slice(0, 120)}`);
    continue;
  }
  check(o, n);
}
process.stdout.write(JSON.stringify(out) + '\n');
for (const p of problems.slice(0, 20)) process.stderr.write(`check_emf: ${p}\n`);
process.exit(problems.length ? 1 : 0);
