#!/usr/bin/env node
/*
 * kinesis_fault_proxy.js: a fault-injecting HTTP proxy for tests, in front of an
 * upstream Kinesis (kinesis-mock). Node built-ins only.
 *
 * Start:
 *   node tests/tools/kinesis_fault_proxy.js --upstream http://127.0.0.1:PORT [options]
 *   Prints ONE line on stdout once listening: "<port> <control_port>" (then nothing else;
 *   diagnostics go to stderr). Exits on SIGTERM/SIGINT.
 * Options (each also read from the environment variable in brackets; rates are 0..1):
 *   --port N              data port, 0 = ephemeral (default)          [KFP_PORT]
 *   --control-port N      control port, 0 = ephemeral (default)       [KFP_CONTROL_PORT]
 *   --host H              listen address (default 127.0.0.1)          [KFP_HOST]
 *   --upstream URL        the real endpoint (required)                [KFP_UPSTREAM]
 *   --seed N              PRNG seed, for reproducible random faults  [KFP_SEED]
 *   --config JSON         initial fault configuration (keys below)   [KFP_CONFIG]
 *   --error500-rate R --error503-rate R --throttle-rate R --throttle-record-rate R
 *   --latency-ms N --down (shorthands for the keys of the same meaning)
 *   --credentials-file F  verify credentials as Kinesis would        [KFP_CREDENTIALS_FILE]
 *                         F lists the key pairs a credentials provider has issued, one per
 *                         line "<AccessKeyId> <Token> <Expiration epoch ms> <SecretAccessKey>"
 *                         (lambda-sim --snapstart --credentials-file writes it; re-read per
 *                         request). Every data request must then carry a valid SigV4
 *                         signature by a listed, unexpired key with its token, else:
 *                         unknown key or wrong token -> 400 UnrecognizedClientException,
 *                         past Expiration -> 400 ExpiredTokenException, bad signature ->
 *                         400 InvalidSignatureException (not forwarded, no other fault).
 *   --spread-records N    write each stream in generations of N records  [KFP_SPREAD_RECORDS]
 *                         (0 = off, the default): once N records went to stream S, the
 *                         PutRecords/PutRecord naming S go to a fresh stream "S-g1" with S's
 *                         shard count, then "S-g2", ... For runs of hundreds of thousands of
 *                         records: kinesis-mock's PutRecords costs time in proportion to what
 *                         the shard already holds (it groups the new records by a key that
 *                         holds the shard's whole record vector: one hash of it per record),
 *                         so one growing stream slows to seconds per request. GET /__stats
 *                         lists the generations in spread.streams.S, in order; read them
 *                         all with kinesis_read.js --stream S,S-g1,...
 *
 * Fault configuration (JSON keys; POST /__fault merges them into the current one):
 *   error500Rate          whole request answered 500 InternalFailure, not forwarded
 *   error503Rate          whole request answered 503 ServiceUnavailable, not forwarded
 *   throttleRate          whole request answered 400 ThrottlingException, not forwarded
 *   exceededRate          whole request answered 400 ProvisionedThroughputExceededException
 *   resetRate             connection reset (RST) without forwarding
 *   dropReplyRate         forwarded to upstream (records WRITTEN), then the client
 *                         connection is reset instead of answering: the lost-ack case
 *   throttleRecordRate    PutRecords: this fraction of records fails with
 *                         ProvisionedThroughputExceededException (HTTP 200, partial failure)
 *   internalRecordRate    PutRecords: this fraction fails with InternalFailure
 *                         Failed records are NOT forwarded: only the others are sent
 *                         upstream and the reply is spliced back in request order.
 *   latencyMs             delay before handling each request (also before injected errors)
 *   latencyMsPerMiB       further delay in proportion to the request body (ms per MiB): a stream
 *                         that takes data slowly, where large requests outlast a client's timeout
 *   rejectMarker          a string: a PutRecords whose records' data (base64-decoded) contain
 *                         it is answered 400 InvalidArgumentException, not forwarded (a
 *                         record Kinesis refuses: the requests without it go through)
 *   down                  true: the data port is down; downMode "refuse" (default: the
 *                         listening socket is closed, so connections are refused, and open
 *                         connections are reset) or "reset" (accepted, then reset at once)
 *   downMs                with down: come back up by itself after this many ms
 *   targets               operations the faults apply to (default ["PutRecords","PutRecord"]);
 *                         other operations pass through untouched (still counted)
 *   script                list of actions for the next requests of `targets`, in order,
 *                         taking precedence over the rates: "ok", "500", "503", "throttle",
 *                         "exceeded", "expired" (400 ExpiredTokenException), "validation",
 *                         "notfound", "accessdenied", "reset", "dropReply",
 *                         "partial:I,J,..." (fail those record indexes) or "partial:all"
 *   reset: true           back to the defaults (no faults) before merging the other keys
 * Control endpoints, on the control port and (while up) on the data port:
 *   POST /__fault  JSON   merge configuration; replies with the configuration
 *   GET  /__fault         current configuration
 *   GET  /__stats         counters (below); POST /__stats/reset zeroes them
 * Counters: requests, byTarget{}, injected{error500,error503,throttle,exceeded,expired,
 *   validation,notfound,accessdenied,reset,dropReply,partialRequests,downResets},
 *   records{received, forwarded, acceptedUpstream, failedUpstream, injectedFailed,
 *   rejectedWhole (in requests answered with an injected error or reset), ackDropped
 *   (accepted upstream but the reply was dropped, or the client connection was reset
 *   while upstream wrote them, e.g. by going down: may legitimately arrive twice)},
 *   upstreamErrors, latencyApplied, seed, amzDate{checked, missing, maxSkewMs, last,
 *   lastSkewMs} (X-Amz-Date of the requests to `targets` minus their arrival time: a
 *   request signed before a freeze and sent after it shows the frozen time),
 *   credentials{checked, accepted, unknown, expired, badSignature, keys{AccessKeyId: accepted
 *   requests}, log [{akid, at, conn}] of the first 10,000 accepted} (with --credentials-file),
 *   connections (data connections accepted; `conn` numbers them from 1),
 *   spread{records, streams{S: [S, S-g1, ...]}} (with --spread-records; never reset).
 *
 * Example:
 *   read -r PORT CPORT < <(node tests/tools/kinesis_fault_proxy.js --upstream "$EP" & echo) ...
 *   (see tests/tools/test_tools.sh for a complete, race-free start-up)
 *   curl -s -X POST localhost:$CPORT/__fault -d '{"throttleRecordRate":0.2,"latencyMs":50}'
 *   curl -s localhost:$CPORT/__stats
 */
'use strict';
const http = require('http');
const https = require('https');

const ERRORS = {
  500: [500, 'InternalFailure', 'We encountered an internal error. Please try again.'],
  503: [503, 'ServiceUnavailable', 'Service is unavailable. Please try again.'],
  throttle: [400, 'ThrottlingException', 'Rate exceeded'],
  exceeded: [400, 'ProvisionedThroughputExceededException', 'Rate exceeded for stream.'],
  expired: [400, 'ExpiredTokenException', 'The security token included in the request is expired'],
  validation: [400, 'ValidationException', '1 validation error detected (injected)'],
  invalid: [400, 'InvalidArgumentException', 'A record of the request is not valid (injected marker).'],
  notfound: [400, 'ResourceNotFoundException', 'Stream not found (injected).'],
  accessdenied: [400, 'AccessDeniedException', 'User is not authorized to perform: kinesis:PutRecords (injected)'],
  unrecognized: [400, 'UnrecognizedClientException', 'The security token included in the request is invalid.'],
  badsignature: [400, 'InvalidSignatureException',
    'The request signature we calculated does not match the signature you provided.'],
};
const COUNTER_OF = { 500: 'error500', 503: 'error503' };

function defaults() {
  return {
    error500Rate: 0, error503Rate: 0, throttleRate: 0, exceededRate: 0, resetRate: 0, dropReplyRate: 0,
    throttleRecordRate: 0, internalRecordRate: 0, latencyMs: 0, latencyMsPerMiB: 0, down: false, downMode: 'refuse', downMs: 0,
    targets: ['PutRecords', 'PutRecord'], script: [], rejectMarker: '',
  };
}

function zeroStats(seed) {
  return {
    requests: 0, byTarget: {},
    injected: { error500: 0, error503: 0, throttle: 0, exceeded: 0, expired: 0, validation: 0, invalid: 0, notfound: 0,
      accessdenied: 0, reset: 0, dropReply: 0, partialRequests: 0, downResets: 0 },
    records: { received: 0, forwarded: 0, acceptedUpstream: 0, failedUpstream: 0, injectedFailed: 0,
      rejectedWhole: 0, ackDropped: 0 },
    upstreamErrors: 0, latencyApplied: 0, seed, connections: 0,
    /* X-Amz-Date of requests to `targets` against the arrival time: a request signed
     * before a long freeze and sent after it shows the freeze as skew. */
    amzDate: { checked: 0, missing: 0, maxSkewMs: 0, last: null, lastSkewMs: null },
    credentials: { checked: 0, accepted: 0, unknown: 0, expired: 0, badSignature: 0, keys: {}, log: [] },
  };
}

/* mulberry32: small seeded PRNG so a run's random faults can be reproduced. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function parseArgs(argv) {
  const env = process.env;
  const o = {
    port: Number(env.KFP_PORT || 0), controlPort: Number(env.KFP_CONTROL_PORT || 0),
    host: env.KFP_HOST || '127.0.0.1', upstream: env.KFP_UPSTREAM || '',
    seed: env.KFP_SEED !== undefined ? Number(env.KFP_SEED) : Math.floor(Math.random() * 2 ** 31),
    config: env.KFP_CONFIG ? JSON.parse(env.KFP_CONFIG) : {},
    credentialsFile: env.KFP_CREDENTIALS_FILE || '',
    spreadRecords: Number(env.KFP_SPREAD_RECORDS || 0),
  };
  const shorthand = { '--error500-rate': 'error500Rate', '--error503-rate': 'error503Rate',
    '--throttle-rate': 'throttleRate', '--throttle-record-rate': 'throttleRecordRate', '--latency-ms': 'latencyMs' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') o.port = Number(argv[++i]);
    else if (a === '--control-port') o.controlPort = Number(argv[++i]);
    else if (a === '--host') o.host = argv[++i];
    else if (a === '--upstream') o.upstream = argv[++i];
    else if (a === '--seed') o.seed = Number(argv[++i]);
    else if (a === '--config') Object.assign(o.config, JSON.parse(argv[++i]));
    else if (a === '--down') o.config.down = true;
    else if (a === '--credentials-file') o.credentialsFile = argv[++i];
    else if (a === '--spread-records') o.spreadRecords = Number(argv[++i]);
    else if (shorthand[a]) o.config[shorthand[a]] = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  if (!o.upstream) throw new Error('--upstream URL (or KFP_UPSTREAM) is required');
  if (!(Number.isInteger(o.spreadRecords) && o.spreadRecords >= 0)) throw new Error('--spread-records: N >= 0');
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const upstream = new URL(opts.upstream);
const upMod = upstream.protocol === 'https:' ? https : http;
const upAgent = new upMod.Agent({ keepAlive: true, maxSockets: 64 });
const rand = prng(opts.seed);
let cfg = defaults();
let stats = zeroStats(opts.seed);
const sockets = new Set();
let downTimer = null;
let dataServer = null;
let dataPort = opts.port;

function log(msg) { process.stderr.write(`[fault-proxy] ${msg}\n`); }

function validateConfig(c) {
  for (const k of ['error500Rate', 'error503Rate', 'throttleRate', 'exceededRate', 'resetRate', 'dropReplyRate',
    'throttleRecordRate', 'internalRecordRate']) {
    if (c[k] !== undefined && !(typeof c[k] === 'number' && c[k] >= 0 && c[k] <= 1)) throw new Error(`${k}: 0..1`);
  }
  if (c.downMode !== undefined && !['refuse', 'reset'].includes(c.downMode)) throw new Error('downMode: refuse|reset');
  if (c.script !== undefined && !Array.isArray(c.script)) throw new Error('script: array');
  if (c.rejectMarker !== undefined && typeof c.rejectMarker !== 'string') throw new Error('rejectMarker: string');
}

/* Merges c into the configuration; resolves once the data port is in the state asked for. */
function applyConfig(c) {
  validateConfig(c);
  const wasDown = cfg.down;
  if (c.reset) cfg = defaults();
  for (const [k, v] of Object.entries(c)) if (k !== 'reset') cfg[k] = v;
  if (cfg.down && !wasDown) goDown();
  else if (!cfg.down && wasDown) return goUp();
  else if (cfg.down && c.downMs !== undefined) armDownTimer();
  return Promise.resolve();
}

function armDownTimer() {
  if (downTimer) clearTimeout(downTimer);
  downTimer = null;
  if (cfg.down && cfg.downMs > 0) {
    downTimer = setTimeout(() => { downTimer = null; cfg.down = false; goUp(); }, cfg.downMs);
  }
}

/* listen() is asynchronous (it resolves the host first): track a pending one. */
let listenPending = false;
let started = false;

function listenData() {
  if (dataServer.listening || listenPending) return;
  listenPending = true;
  dataServer.listen(dataPort, opts.host);
}

function waitListening(timeoutMs) {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const tick = () => (dataServer.listening || Date.now() - t0 > timeoutMs ? resolve() : setTimeout(tick, 5));
    tick();
  });
}

function goDown() {
  log(`down (${cfg.downMode})`);
  /* A listen still pending is closed by the 'listening' handler as soon as it completes. */
  if (cfg.downMode === 'refuse' && dataServer.listening) dataServer.close();
  for (const s of sockets) {
    if (s.kfpData) resetSocket(s);
  }
  armDownTimer();
}

function goUp() {
  log('up');
  if (downTimer) { clearTimeout(downTimer); downTimer = null; }
  listenData();
  return waitListening(3000);
}

function resetSocket(s) {
  if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
  else s.destroy();
}

function sendJson(res, status, obj, extraHeaders = {}) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, { 'Content-Type': 'application/x-amz-json-1.1', 'Content-Length': body.length,
    ...extraHeaders });
  res.end(body);
}

function sendError(res, kind) {
  const [status, type, message] = ERRORS[kind];
  sendJson(res, status, { __type: type, message }, { 'x-amzn-ErrorType': `${type}:` });
}

function handleControl(req, res, body) {
  try {
    if (req.url === '/__fault' && req.method === 'POST') {
      return applyConfig(body.length ? JSON.parse(body.toString('utf8')) : {}).then(() => sendJson(res, 200, cfg));
    }
    if (req.url === '/__fault' && req.method === 'GET') return sendJson(res, 200, cfg);
    if (req.url === '/__stats' && req.method === 'GET') return sendJson(res, 200, { ...stats, spread });
    if (req.url === '/__stats/reset' && req.method === 'POST') {
      stats = zeroStats(opts.seed);
      return sendJson(res, 200, stats);
    }
    if (req.url === '/__health') return sendJson(res, 200, { ok: true, down: cfg.down });
    return sendJson(res, 404, { message: 'unknown control endpoint' });
  } catch (e) {
    return sendJson(res, 400, { message: String(e.message) });
  }
}

/* Forwards body upstream; resolves {status, headers, body} or rejects on connection errors. */
function forward(req, body) {
  const headers = { ...req.headers };
  delete headers.host;
  delete headers['content-length'];
  delete headers.expect;
  delete headers.connection;
  headers['content-length'] = body.length;
  headers.host = upstream.host;
  return new Promise((resolve, reject) => {
    const u = upMod.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method,
      headers, agent: upAgent, rejectUnauthorized: false }, (ur) => {
      const chunks = [];
      ur.on('data', (c) => chunks.push(c));
      ur.on('end', () => resolve({ status: ur.statusCode, headers: ur.headers, body: Buffer.concat(chunks) }));
      ur.on('error', reject);
    });
    u.on('error', reject);
    u.end(body);
  });
}

function relay(res, up) {
  const h = {};
  for (const [k, v] of Object.entries(up.headers)) {
    if (!['connection', 'transfer-encoding', 'content-length', 'keep-alive'].includes(k)) h[k] = v;
  }
  h['content-length'] = up.body.length;
  res.writeHead(up.status, h);
  res.end(up.body);
}

/* Picks this request's action: a script entry, else the random rates. */
function chooseAction() {
  if (cfg.script.length) return String(cfg.script.shift());
  const r = rand();
  let acc = 0;
  for (const [key, action] of [['error500Rate', '500'], ['error503Rate', '503'], ['throttleRate', 'throttle'],
    ['exceededRate', 'exceeded'], ['resetRate', 'reset'], ['dropReplyRate', 'dropReply']]) {
    acc += cfg[key];
    if (r < acc) return action;
  }
  return 'ok';
}

/* X-Amz-Date is YYYYMMDD'T'HHMMSS'Z' (SigV4): records how far it is from now. */
function noteAmzDate(v) {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(v);
  if (!m) { stats.amzDate.missing++; return; }
  const t = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
  const skew = Date.now() - t;
  stats.amzDate.checked++;
  stats.amzDate.last = v;
  stats.amzDate.lastSkewMs = skew;
  if (Math.abs(skew) > Math.abs(stats.amzDate.maxSkewMs)) stats.amzDate.maxSkewMs = skew;
}

/*
 * SigV4 verification against the issued key pairs (--credentials-file): the checks Kinesis
 * makes before anything else. Returns null when the request may pass, else an ERRORS kind.
 */
const crypto = require('crypto');
const sha256hex = (b) => crypto.createHash('sha256').update(b).digest('hex');
const hmac = (k, v) => crypto.createHmac('sha256', k).update(v).digest();

function readKeys() {
  const keys = new Map();
  let text = '';
  try { text = require('fs').readFileSync(opts.credentialsFile, 'utf8'); } catch (e) { return keys; }
  for (const line of text.split('\n')) {
    const [akid, token, exp, secret] = line.trim().split(/\s+/);
    if (akid && secret) keys.set(akid, { token, expires: Number(exp), secret });
  }
  return keys;
}

function checkCredentials(req, body) {
  const c = stats.credentials;
  const now = Date.now();
  c.checked++;
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/
    .exec(String(req.headers.authorization || ''));
  if (!m) { c.unknown++; return 'unrecognized'; }
  const [, akid, date, region, service, signed, signature] = m;
  const key = readKeys().get(akid);
  if (!key || String(req.headers['x-amz-security-token'] || '') !== key.token) { c.unknown++; return 'unrecognized'; }
  if (now >= key.expires) { c.expired++; return 'expired'; }
  const amzDate = String(req.headers['x-amz-date'] || '');
  const names = signed.split(';');
  const canonHeaders = names.map((n) => `${n}:${String(req.headers[n] || '').trim().replace(/\s+/g, ' ')}\n`).join('');
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  const creq = [req.method, path, q < 0 ? '' : req.url.slice(q + 1), canonHeaders, signed, sha256hex(body)].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const sts = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(creq)].join('\n');
  let k = hmac(`AWS4${key.secret}`, date);
  k = hmac(hmac(hmac(k, region), service), 'aws4_request');
  if (!names.includes('host') || crypto.createHmac('sha256', k).update(sts).digest('hex') !== signature) {
    c.badSignature++;
    return 'badsignature';
  }
  c.accepted++;
  c.keys[akid] = (c.keys[akid] || 0) + 1;
  if (c.log.length < 10000) c.log.push({ akid, at: now, conn: req.socket.kfpConn });
  return null;
}

/*
 * --spread-records: the stream generation a request's records go to. Requests are
 * assigned in arrival order, one at a time (a new generation is created and ACTIVE
 * before any request is sent to it).
 */
const kc = require('./kinesis_client');
const spread = { records: 0, streams: {} };
const spreadState = new Map();   /* S -> { count, shards, chain } */

async function spreadStream(name, region) {
  const st = spreadState.get(name);
  if (!st.shards) {
    const r = await kc.callRetry(opts.upstream, 'DescribeStreamSummary', { StreamName: name }, { region });
    if (r.status !== 200) throw new Error(`DescribeStreamSummary ${name}: HTTP ${r.status} ${r.raw.slice(0, 200)}`);
    st.shards = r.body.StreamDescriptionSummary.OpenShardCount;
  }
  const gen = `${name}-g${spread.streams[name].length}`;
  const r = await kc.callRetry(opts.upstream, 'CreateStream', { StreamName: gen, ShardCount: st.shards }, { region });
  if (r.status !== 200) throw new Error(`CreateStream ${gen}: HTTP ${r.status} ${r.raw.slice(0, 200)}`);
  if (!(await kc.waitActive(opts.upstream, gen, 30000, { region }))) throw new Error(`${gen} never became ACTIVE`);
  log(`spread: ${name} continues in ${gen} after ${st.count} records`);
  spread.streams[name].push(gen);
  st.count = 0;
}

async function spreadRewrite(req, json, nrec) {
  const arn = typeof json.StreamARN === 'string' ? json.StreamARN : '';
  const name = typeof json.StreamName === 'string' ? json.StreamName : arn.slice(arn.lastIndexOf('/') + 1);
  if (!name || nrec === 0) return false;
  const m = /Credential=[^/]+\/\d{8}\/([^/]+)\//.exec(String(req.headers.authorization || ''));
  const region = m ? m[1] : undefined;
  if (!spreadState.has(name)) {
    spreadState.set(name, { count: 0, shards: 0, chain: Promise.resolve() });
    spread.streams[name] = [name];
  }
  const st = spreadState.get(name);
  const turn = st.chain.then(async () => {
    if (st.count > 0 && st.count + nrec > opts.spreadRecords) await spreadStream(name, region);
    st.count += nrec;
    spread.records += nrec;
    return spread.streams[name][spread.streams[name].length - 1];
  });
  st.chain = turn.catch(() => {});
  const gen = await turn;
  if (gen === name) return false;
  if (json.StreamName !== undefined) json.StreamName = gen;
  if (arn) json.StreamARN = arn.slice(0, arn.lastIndexOf('/') + 1) + gen;
  return true;
}

function countRecords(json) {
  if (json && Array.isArray(json.Records)) return json.Records.length;
  if (json && json.Data !== undefined) return 1;         /* PutRecord */
  return 0;
}

async function handleData(req, res, body) {
  const targetHdr = String(req.headers['x-amz-target'] || '');
  const target = targetHdr.includes('.') ? targetHdr.slice(targetHdr.indexOf('.') + 1) : targetHdr;
  stats.requests++;
  stats.byTarget[target] = (stats.byTarget[target] || 0) + 1;
  const faulty = cfg.targets.includes(target);
  let json = null;
  if (target === 'PutRecords' || target === 'PutRecord') {
    try { json = JSON.parse(body.toString('utf8')); } catch (e) { json = null; }
  }
  const nrec = countRecords(json);
  if (opts.credentialsFile) {
    const refused = checkCredentials(req, body);
    if (refused) {
      stats.records.rejectedWhole += faulty ? nrec : 0;
      return sendError(res, refused);
    }
  }
  if (opts.spreadRecords > 0 && json && await spreadRewrite(req, json, nrec)) {
    body = Buffer.from(JSON.stringify(json));   /* kinesis-mock does not check the signature */
  }
  if (faulty) {
    stats.records.received += nrec;
    noteAmzDate(String(req.headers['x-amz-date'] || ''));
  }

  const delay = cfg.latencyMs + Math.round(cfg.latencyMsPerMiB * body.length / 1048576);
  if (faulty && delay > 0) {
    stats.latencyApplied++;
    await new Promise((r) => setTimeout(r, delay));
  }
  if (!faulty) return passThrough(req, res, body, 0);

  let action = chooseAction();
  let failIdx = null;
  if (cfg.rejectMarker && target === 'PutRecords' && json && Array.isArray(json.Records) &&
      json.Records.some((r) => Buffer.from(String(r.Data || ''), 'base64').includes(cfg.rejectMarker))) {
    action = 'invalid';
  }
  if (action.startsWith('partial:')) {
    const spec = action.slice(8);
    failIdx = new Set(spec === 'all' ? [...Array(nrec).keys()] : spec.split(',').filter((x) => x !== '').map(Number));
    action = 'ok';
  }
  if (ERRORS[action]) {
    stats.injected[COUNTER_OF[action] || action]++;
    stats.records.rejectedWhole += nrec;
    return sendError(res, action);
  }
  if (action === 'reset') {
    stats.injected.reset++;
    stats.records.rejectedWhole += nrec;
    return resetSocket(req.socket);
  }
  if (action !== 'ok' && action !== 'dropReply') log(`unknown script action ${action}, treated as ok`);

  /* Record-level faults: PutRecords only. */
  if (target === 'PutRecords' && json && Array.isArray(json.Records)) {
    const codes = new Array(nrec).fill(null);
    for (let i = 0; i < nrec; i++) {
      if (failIdx) {
        if (failIdx.has(i)) codes[i] = 'ProvisionedThroughputExceededException';
      } else {
        const r = rand();
        if (r < cfg.throttleRecordRate) codes[i] = 'ProvisionedThroughputExceededException';
        else if (r < cfg.throttleRecordRate + cfg.internalRecordRate) codes[i] = 'InternalFailure';
      }
    }
    const nfail = codes.filter((c) => c !== null).length;
    if (nfail > 0) return partial(req, res, json, codes, nfail, action === 'dropReply');
  }
  return passThrough(req, res, body, nrec, action === 'dropReply');
}

async function passThrough(req, res, body, nrec, dropReply = false) {
  let up;
  stats.records.forwarded += nrec;
  try {
    up = await forward(req, body);
  } catch (e) {
    stats.upstreamErrors++;
    log(`upstream: ${e.message}`);
    return resetSocket(req.socket);
  }
  /* The client connection may have been reset meanwhile (going down): its ack is lost too. */
  accountUpstream(up, nrec, dropReply || req.socket.destroyed);
  if (dropReply) { stats.injected.dropReply++; return resetSocket(req.socket); }
  return relay(res, up);
}

function accountUpstream(up, nrec, dropReply) {
  if (nrec === 0) return;
  let ok = 0;
  if (up.status === 200) {
    try {
      const b = JSON.parse(up.body.toString('utf8'));
      ok = Array.isArray(b.Records) ? b.Records.filter((r) => !r.ErrorCode).length : (b.SequenceNumber ? 1 : 0);
    } catch (e) { ok = 0; }
  }
  stats.records.acceptedUpstream += ok;
  stats.records.failedUpstream += nrec - ok;
  if (dropReply) stats.records.ackDropped += ok;
}

async function partial(req, res, json, codes, nfail, dropReply) {
  stats.injected.partialRequests++;
  stats.records.injectedFailed += nfail;
  const keep = json.Records.filter((_, i) => codes[i] === null);
  let upRecords = [];
  let upFailed = 0;
  let encryption = 'NONE';
  if (keep.length > 0) {
    const sub = { ...json, Records: keep };
    const body = Buffer.from(JSON.stringify(sub));
    stats.records.forwarded += keep.length;
    let up;
    try {
      up = await forward(req, body);
    } catch (e) {
      stats.upstreamErrors++;
      log(`upstream: ${e.message}`);
      return resetSocket(req.socket);
    }
    accountUpstream(up, keep.length, dropReply || req.socket.destroyed);
    if (dropReply) { stats.injected.dropReply++; return resetSocket(req.socket); }
    if (up.status !== 200) return relay(res, up);     /* whole subset failed: pass the error on */
    let b;
    try { b = JSON.parse(up.body.toString('utf8')); } catch (e) { b = null; }
    if (!b || !Array.isArray(b.Records) || b.Records.length !== keep.length) {
      log('upstream reply does not match the forwarded subset; relayed as is');
      return relay(res, up);
    }
    upRecords = b.Records;
    upFailed = b.FailedRecordCount || 0;
    encryption = b.EncryptionType || encryption;
  } else if (dropReply) {
    stats.injected.dropReply++;
    return resetSocket(req.socket);
  }
  const out = [];
  let j = 0;
  for (const c of codes) {
    if (c === null) out.push(upRecords[j++]);
    else out.push({ ErrorCode: c, ErrorMessage: c === 'InternalFailure' ? 'Internal service failure.'
      : 'Rate exceeded for shard shardId-000000000000 in stream (injected).' });
  }
  return sendJson(res, 200, { FailedRecordCount: nfail + upFailed, EncryptionType: encryption, Records: out });
}

function makeHandler(isControlPort) {
  return (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (isControlPort || req.url.startsWith('/__')) return handleControl(req, res, body);
      handleData(req, res, body).catch((e) => {
        log(`error: ${e.stack || e}`);
        if (!res.headersSent) sendError(res, 500);
      });
    });
  };
}

dataServer = http.createServer(makeHandler(false));
dataServer.keepAliveTimeout = 60000;
dataServer.on('listening', () => {
  listenPending = false;
  if (cfg.down && cfg.downMode === 'refuse') dataServer.close();
});
dataServer.on('error', (e) => {      /* re-listen after "down" lost the port race: retry */
  listenPending = false;
  log(`data port: ${e.message}`);
  if (!started) process.exit(1);
  if (!cfg.down) setTimeout(listenData, 100);
});
let connSeq = 0;
dataServer.on('connection', (s) => {
  if (cfg.down) {                     /* "reset" mode: accept, then reset at once */
    stats.injected.downResets++;
    resetSocket(s);
    return;
  }
  s.kfpData = true;
  s.kfpConn = ++connSeq;
  stats.connections++;
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
});
dataServer.on('clientError', (e, s) => { if (s.writable) s.end('HTTP/1.1 400 Bad Request\r\n\r\n'); });
const controlServer = http.createServer(makeHandler(true));

function start() {
  listenPending = true;
  dataServer.once('listening', () => {
    started = true;
    dataPort = dataServer.address().port;
    controlServer.listen(opts.controlPort, opts.host, () => {
      try { applyConfig(opts.config); } catch (e) { log(`bad config: ${e.message}`); process.exit(2); }
      process.stdout.write(`${dataPort} ${controlServer.address().port}\n`);
      log(`listening on ${opts.host}:${dataPort} (control ${controlServer.address().port}), ` +
        `upstream ${opts.upstream}, seed ${opts.seed}`);
    });
  });
  dataServer.listen(opts.port, opts.host);
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    for (const s of sockets) s.destroy();
    process.exit(0);
  });
}
start();
