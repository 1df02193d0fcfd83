#!/usr/bin/env node
/*
 * sigv4_verify_proxy.js: a SigV4-verifying HTTP proxy for tests, served under a path
 * prefix in front of an upstream Kinesis (kinesis-mock, which checks no signature).
 * Node built-ins only; its SigV4 is written here from the AWS documentation, independent
 * of the extension's C signer.
 *
 *   node tests/tools/sigv4_verify_proxy.js --upstream http://127.0.0.1:PORT --prefix /kinesis/ \
 *       --secret SECRET_ACCESS_KEY
 *   Prints ONE line on stdout once listening: "<port>". Exits on SIGTERM/SIGINT.
 *
 * Every request must come to a path under --prefix and carry a valid
 * "AWS4-HMAC-SHA256" Authorization for the path it was received at (canonical URI:
 * dot and empty segments removed, each segment URI-encoded again, as for every service
 * but S3). A valid one is forwarded upstream at "/" + the rest of the path, with its
 * headers and body; any other is answered 403 InvalidSignatureException (a wrong path:
 * 404) and not forwarded. GET /__stats (no prefix) answers
 * {"verified":N,"rejected":N,"wrongPath":N,"lastRejection":"..."}.
 */
'use strict';
const http = require('http');
const crypto = require('crypto');

const args = {};
for (let i = 2; i < process.argv.length; i += 2)
	args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.upstream || !args.prefix || !args.secret) {
	process.stderr.write('usage: sigv4_verify_proxy.js --upstream URL --prefix /p/ --secret KEY\n');
	process.exit(2);
}
const upstream = new URL(args.upstream);
const stats = { verified: 0, rejected: 0, wrongPath: 0, lastRejection: '' };

const sha256 = (d) => crypto.createHash('sha256').update(d).digest('hex');
const hmac = (k, d) => crypto.createHmac('sha256', k).update(d).digest();

/* RFC 3986 remove_dot_segments, and empty segments dropped, a trailing "/" kept. */
function normalise(path) {
	const out = [];
	const segs = path.split('/');
	for (const s of segs) {
		if (s === '' || s === '.')
			continue;
		if (s === '..')
			out.pop();
		else
			out.push(s);
	}
	const last = segs[segs.length - 1];
	const trailing = last === '' || last === '.' || last === '..';
	let p = '/' + out.join('/');
	if (trailing && !p.endsWith('/'))
		p += '/';
	return p;
}

/* Encodes everything but the unreserved characters (so "%" becomes "%25"). */
function uriEncode(s) {
	return Buffer.from(s, 'utf8').toString('latin1').replace(/[^A-Za-z0-9\-._~]/g,
		(c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'));
}

function canonicalUri(path) {
	return normalise(path).split('/').map(uriEncode).join('/');
}

/* Returns "" when the request's signature is right, else why not. */
function verify(req, body) {
	const auth = req.headers.authorization || '';
	const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
	if (!m)
		return 'malformed Authorization: ' + auth.slice(0, 80);
	const [, , date, region, service, signed, signature] = m;
	const amzDate = req.headers['x-amz-date'] || '';
	if (!amzDate.startsWith(date))
		return 'x-amz-date ' + amzDate + ' is not of the credential date ' + date;
	const names = signed.split(';');
	if (!names.includes('host'))
		return 'host is not signed';
	let headers = '';
	for (const n of names) {
		const v = req.headers[n];
		if (v === undefined)
			return 'signed header ' + n + ' is missing';
		headers += n + ':' + String(v).trim().replace(/\s+/g, ' ') + '\n';
	}
	const q = req.url.indexOf('?');
	const path = q < 0 ? req.url : req.url.slice(0, q);
	const creq = [req.method, canonicalUri(path), '', headers, signed, sha256(body)].join('\n');
	const scope = [date, region, service, 'aws4_request'].join('/');
	const sts = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(creq)].join('\n');
	let k = hmac('AWS4' + args.secret, date);
	k = hmac(k, region);
	k = hmac(k, service);
	k = hmac(k, 'aws4_request');
	const want = crypto.createHmac('sha256', k).update(sts).digest('hex');
	return want === signature ? '' : 'signature mismatch for ' + path + ' (canonical URI ' + canonicalUri(path) + ')';
}

function reply(res, status, type, message) {
	res.writeHead(status, { 'Content-Type': 'application/x-amz-json-1.1', 'x-amzn-ErrorType': type });
	res.end(JSON.stringify({ __type: type, message }));
}

const server = http.createServer((req, res) => {
	const chunks = [];
	req.on('data', (c) => chunks.push(c));
	req.on('end', () => {
		const body = Buffer.concat(chunks);
		if (req.method === 'GET' && req.url === '/__stats') {
			res.writeHead(200, { 'Content-Type': 'application/json' });
			res.end(JSON.stringify(stats));
			return;
		}
		if (!req.url.startsWith(args.prefix)) {
			stats.wrongPath++;
			stats.lastRejection = 'path ' + req.url;
			reply(res, 404, 'UnknownOperationException', 'not under ' + args.prefix);
			return;
		}
		const why = verify(req, body);
		if (why) {
			stats.rejected++;
			stats.lastRejection = why;
			process.stderr.write('sigv4_verify_proxy: rejected: ' + why + '\n');
			reply(res, 403, 'InvalidSignatureException', why);
			return;
		}
		stats.verified++;
		const headers = Object.assign({}, req.headers, { host: upstream.host });
		const up = http.request({ host: upstream.hostname, port: upstream.port, method: req.method,
			path: '/' + req.url.slice(args.prefix.length), headers }, (ur) => {
			res.writeHead(ur.statusCode, ur.headers);
			ur.pipe(res);
		});
		up.on('error', (e) => reply(res, 502, 'ServiceUnavailable', 'upstream: ' + e.message));
		up.end(body);
	});
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\n'));
for (const s of ['SIGTERM', 'SIGINT'])
	process.on(s, () => process.exit(0));
