// Browser test harness: a fresh `hexflow dev` stack per test (embedded nats-server and
// PostgreSQL in a scratch directory), Debian's Chromium driven by playwright-core, and
// generated scan files.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const corpus = process.env.HEXFLOW_CORPUS_DIR || path.resolve(root, '../shared/corpus');
export const artifacts = path.join(root, 'tests/e2e/artifacts');
fs.mkdirSync(artifacts, { recursive: true });

function hexflowBinary() {
  if (process.env.HEXFLOW_BIN) return path.resolve(root, process.env.HEXFLOW_BIN);
  const target = path.resolve(root, process.env.CARGO_TARGET_DIR || 'target');
  return path.join(target, 'debug', 'hexflow');
}

async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  return port;
}

/** Waits until `check()` is truthy, polling every 50 ms, for at most `ms`. */
export async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try { last = await check(); if (last) return last; } catch (e) { last = e; }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last})`);
}

/** A running `hexflow dev`, its log kept under tests/e2e/artifacts. */
/** An HS256 JWT for `claims`, signed with `secret` (as an identity provider would issue it). */
export function token(secret, claims) {
  const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
  const signed = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${signed}.${crypto.createHmac('sha256', secret).update(signed).digest('base64url')}`;
}

export async function startStack(name, extraEnv = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hexflow-e2e-'));
  // As root, hexflow runs PostgreSQL as the postgres user, which must be able to enter it.
  fs.chmodSync(dir, 0o755);
  const port = await freePort();
  const opsPort = await freePort();
  const log = path.join(artifacts, `${name}.log`);
  const out = fs.openSync(log, 'w');
  const env = { ...process.env, ...extraEnv, HEXFLOW_LISTEN: `127.0.0.1:${port}`, HEXFLOW_OPS_LISTEN: `127.0.0.1:${opsPort}`, HEXFLOW_DATA_DIR: dir, HEXFLOW_LOG: 'info' };
  delete env.NATS_URL; delete env.DATABASE_URL; delete env.RUST_LOG; delete env.HEXFLOW_WEB_DIR;
  // Started outside the repository: the page comes from the binary itself.
  const child = spawn(hexflowBinary(), ['dev'], { env, stdio: ['ignore', out, out], cwd: dir });
  const url = `http://127.0.0.1:${port}`;
  await until(async () => {
    if (child.exitCode != null) throw new Error(`hexflow dev exited; see ${log}`);
    const r = await fetch(`http://127.0.0.1:${opsPort}/readyz`).catch(() => null);
    return r?.ok;
  }, 60000, `hexflow dev at ${url} (log ${log})`);
  return {
    url, log, dir,
    async stop() {
      if (child.exitCode == null) {
        child.kill('SIGTERM');
        await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 15000))]);
        if (child.exitCode == null) child.kill('SIGKILL');
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

/** Writes a Nessus-style export of about `bytes` bytes; returns its path. */
export function nessusFile(name, bytes) {
  const file = path.join(os.tmpdir(), `hexflow-e2e-${process.pid}-${name}`);
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, 'Plugin ID,CVE,CVSS,Risk,Host,Protocol,Port,Name,Synopsis,Description,Solution,See Also,Plugin Output\n');
  const filler = 'The remote host is affected by a vulnerability, which may allow an attacker to ""escalate"" privileges.\n'.repeat(4);
  let written = 0;
  let chunk = '';
  for (let i = 0; written < bytes; i++) {
    const plugin = 10000 + ((i * 7919) % 3000);
    const host = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${(i % 250) + 1}`;
    const line = `${plugin},CVE-2024-${String(plugin).padStart(5, '0')},5.0,Medium,${host},tcp,${(plugin % 1000) + 1},"Plugin ${plugin}","Synopsis","${filler}","Patch it.",https://example.com,"Output for ${host}\n${'x'.repeat(40 + (i % 200))}"\n`;
    chunk += line;
    written += line.length;
    if (chunk.length > 1 << 20) { fs.writeSync(fd, chunk); chunk = ''; }
  }
  fs.writeSync(fd, chunk);
  fs.closeSync(fd);
  return file;
}

/** The card of the import whose file is `filename`. */
export function card(page, filename) {
  return page.locator('[data-testid="import-card"]', { hasText: filename });
}
