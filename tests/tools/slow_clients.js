// slow_clients.js: holds connections to an HTTP server open the ways a client can hold a
// server's workers without progress, and keeps holding them: a connection the server
// closes is opened again at once, for as long as the script runs (until SIGTERM).
//
//   node slow_clients.js --port P [--host 127.0.0.1] [--drip N] [--idle N] [--half N]
//                        [--stats FILE]
//
//   drip: POST with Content-Length: 100000, then one body byte a second.
//   idle: one complete POST of "[]" (the answer read), then idle on the kept-alive connection.
//   half: half a request line and headers, then nothing.
// On SIGTERM it writes {"drip":{"opened":..,"closed_by_server":..,"max_held_ms":..},...}
// to FILE (or stdout) and exits. "closed_by_server" counts connections the server ended
// (FIN or reset) while this script still held them.
'use strict';
const net = require('net');
const fs = require('fs');

const args = { host: '127.0.0.1', drip: 0, idle: 0, half: 0, stats: null, port: 0 };
for (let i = 2; i < process.argv.length; i += 2) {
	const k = process.argv[i].replace(/^--/, '');
	if (!(k in args)) { console.error(`unknown option ${process.argv[i]}`); process.exit(2); }
	args[k] = k === 'host' || k === 'stats' ? process.argv[i + 1] : +process.argv[i + 1];
}
if (!args.port) { console.error('--port is required'); process.exit(2); }

const stats = {};
let stopping = false;
const sockets = new Set();

function hold(kind) {
	const st = stats[kind] || (stats[kind] = { opened: 0, closed_by_server: 0, max_held_ms: 0 });
	const s = net.connect(args.port, args.host);
	const t0 = Date.now();
	let timer = null, answered = false;
	st.opened++;
	sockets.add(s);
	s.setNoDelay(true);
	s.on('connect', () => {
		if (kind === 'drip') {
			s.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
				'Content-Length: 100000\r\n\r\n[');
			timer = setInterval(() => s.write(' '), 1000);
		} else if (kind === 'idle') {
			s.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n' +
				'Content-Length: 2\r\n\r\n[]');
		} else {
			s.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Le');
		}
	});
	s.on('data', (d) => { if (kind === 'idle' && /^HTTP\/1\.1 200/.test(d.toString())) answered = true; });
	s.on('error', () => {});
	s.on('close', () => {
		if (timer) clearInterval(timer);
		sockets.delete(s);
		if (stopping) return;
		st.closed_by_server++;
		st.max_held_ms = Math.max(st.max_held_ms, Date.now() - t0);
		if (kind === 'idle' && !answered) st.unanswered = (st.unanswered || 0) + 1;
		// Open the next one at once: the pressure stays for the whole run.
		setTimeout(() => hold(kind), 10);
	});
}

for (const kind of ['drip', 'idle', 'half'])
	for (let i = 0; i < args[kind]; i++)
		hold(kind);

process.on('SIGTERM', () => {
	stopping = true;
	for (const s of sockets) s.destroy();
	const out = JSON.stringify(stats);
	if (args.stats) fs.writeFileSync(args.stats, out + '\n'); else console.log(out);
	process.exit(0);
});
