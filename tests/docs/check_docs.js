// Checks the documentation against the code: the README stays short and opens with the two commands,
// every variable the configuration reads is documented, every relative link resolves, no paragraph stands
// in two files, and nothing refers to a folder outside the repository. Prints one line per problem.
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..', '..');
const problems = [];
const read = (p) => fs.readFileSync(path.join(root, p), 'utf8');
const tracked = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\n').filter(Boolean);
const docs = tracked.filter((f) => f.endsWith('.md') && (f === 'README.md' || f.startsWith('docs/')));

// 1. README: at most ~200 lines, the two commands first.
const readme = read('README.md').split('\n');
if (readme.length > 200) problems.push(`README.md has ${readme.length} lines (at most 200)`);
const head = readme.slice(0, 25).join('\n');
for (const cmd of ['make demo', 'make check'])
  if (!head.includes(cmd)) problems.push(`README.md does not show \`${cmd}\` in its first 25 lines`);

// 2. Every KTE_ variable read by the code is in docs/configuration.md, and every one documented exists.
const config = read('docs/configuration.md');
const code = tracked.filter((f) => /^(common|controller|listener|dispatcher)\/.*\.[ch]$/.test(f));
const readVars = new Set();
for (const f of code)
  for (const m of read(f).matchAll(/"(KTE_[A-Z0-9_]+|AWS_[A-Z0-9_]+)"/g)) readVars.add(m[1]);
for (const v of readVars)
  if (!config.includes('`' + v + '`')) problems.push(`${v} is read by the code but not documented in docs/configuration.md`);
for (const m of config.matchAll(/`(KTE_[A-Z0-9_]+)`/g))
  if (!readVars.has(m[1])) problems.push(`docs/configuration.md documents ${m[1]}, which no code reads`);

// 3. Relative links resolve.
for (const f of docs) {
  for (const m of read(f).matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
    const target = m[1];
    if (/^[a-z]+:/.test(target)) continue;
    if (!fs.existsSync(path.join(root, path.dirname(f), target))) problems.push(`${f}: link to ${target} does not resolve`);
  }
}

// 4. No paragraph in two files (prose of 120+ characters, outside code blocks and tables).
const seen = new Map();
for (const f of docs) {
  let inCode = false;
  const paras = [];
  let cur = [];
  for (const line of read(f).split('\n')) {
    if (line.startsWith('```')) { inCode = !inCode; cur = []; continue; }
    if (inCode || line.startsWith('|')) continue;
    if (line.trim() === '') { if (cur.length) paras.push(cur.join(' ')); cur = []; } else cur.push(line.trim());
  }
  if (cur.length) paras.push(cur.join(' '));
  for (const p of paras) {
    const norm = p.replace(/\s+/g, ' ').trim();
    if (norm.length < 120) continue;
    const other = seen.get(norm);
    if (other && other !== f) problems.push(`paragraph in both ${other} and ${f}: "${norm.slice(0, 70)}..."`);
    else seen.set(norm, f);
  }
}

// 5. Self-contained: nothing refers to a sibling folder of the repository.
for (const f of tracked) {
  if (f.startsWith('tests/node/') || f.startsWith('tests/data/') || f === 'tests/docs/check_docs.js') continue;
  let text;
  try { text = read(f); } catch (e) { continue; }
  if (/\.\.\/shared\b/.test(text)) problems.push(`${f} refers to ../shared (outside the repository)`);
}

for (const p of problems) console.log('FAIL ' + p);
console.log(`docs: ${problems.length} problem(s) in ${docs.length} files`);
process.exit(problems.length ? 1 : 0);
