// Where the daemon may touch the file system, and which addresses its transports may bind.
//
// Why: `netplane serve` runs as root (TAP devices need it) and every path, address and port in a
// request is the requester's choice. So a request never names a path: a capture or a unix socket is
// a plain file name inside a directory netplane owns (the capture and sockets directories, made 0700
// inside the 0700 state directory unless the daemon's config names others), and it is opened without
// following a symlink. netplane deletes or overwrites only what it created itself: the ledger
// (`owned.json` in the state directory) records each socket and capture file it made with its device
// and inode, and a path is unlinked or appended to only when the file there is still that one. An
// entry is written before the file is made (then completed with the inode), so a crash between the
// two leaves a socket the next start may still clear, never a file it cannot account for.
//
// The state directory is the daemon's alone: one daemon holds its lock for its whole life (the lock
// names the holder's pid and start time, so a lock left by a killed daemon is recognised as stale),
// temporary files a crash left are removed at start, and the state file, the lock, the token, the
// ledger and the API socket can never be a capture or a socket target.
//
// Transports bind loopback unless the daemon's config lists other addresses; wildcard addresses and
// privileged ports (below 1024) are refused unless the config allows them. A refusal is a ModelError
// naming the field, so the change that asked for it is refused and nothing else happens.
import {
  openSync, closeSync, writeSync, readSync, fsyncSync, readFileSync, mkdirSync, lstatSync, statSync, unlinkSync,
  readdirSync, fstatSync, constants, type Stats,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { ModelError } from './model/validate.js';
import { PcapWriter } from './pcap.js';
import { writeAtomic } from './model/persist.js';

export const LOCK_FILE = 'lock';
export const TOKEN_FILE = 'token';
export const OWNED_FILE = 'owned.json';
export const API_SOCKET = 'netplane.sock';

const euid = () => process.geteuid?.() ?? -1;

// Makes `dir` if it is missing (mode 0700); if it is there, it must be a directory owned by this
// user that nobody else can write to (otherwise another user could plant files netplane then trusts).
export function ownDirectory(dir: string, what: string): void {
  let st: Stats;
  try {
    st = statSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${what} ${dir}: ${(e as Error).message}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    return;
  }
  if (!st.isDirectory()) throw new Error(`${what} ${dir} is not a directory`);
  if (euid() >= 0 && st.uid !== euid()) throw new Error(`${what} ${dir} belongs to uid ${st.uid}, not to this user (uid ${euid()}); refusing to use it`);
  if (st.mode & 0o022) throw new Error(`${what} ${dir} can be written by other users (mode ${(st.mode & 0o777).toString(8)}); make it 0700 or 0750`);
}

// Removes the temporary files an interrupted atomic write leaves (".<name>.<pid>.tmp"), and nothing
// else.
export function removeStaleTemporaries(dir: string): string[] {
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    if (!/^\.(state\.json|dhcp-leases\.json|cluster-view\.json|owned\.json|token)\.\d+\.tmp$/.test(name)) continue;
    const p = join(dir, name);
    if (!lstatSync(p).isFile()) continue;
    unlinkSync(p);
    removed.push(name);
  }
  return removed;
}

// ---- one daemon per state directory ---------------------------------------------------------------

export class LockedError extends Error {
  constructor(readonly dir: string, readonly pid: number) {
    super(`another netplane daemon (pid ${pid}) is serving ${dir}; stop it first, or use another --state-dir`);
  }
}

// A process's start time (clock ticks since boot, /proc/<pid>/stat field 22), so a recycled pid is not
// taken for the daemon that held the lock. Undefined where /proc is not there.
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function alive(pid: number, start: string | undefined): boolean {
  if (existsProc()) return start !== undefined && startTime(pid) === start;
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}
const existsProc = () => { try { return statSync('/proc/self/stat').isFile(); } catch { return false; } };

// Takes the state directory's lock for this process; throws LockedError naming the holder if a live
// daemon has it. Returns the function that releases it.
export function lockStateDir(dir: string): () => void {
  const path = join(dir, LOCK_FILE);
  const me = JSON.stringify({ pid: process.pid, start: startTime(process.pid) }) + '\n';
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let holder: { pid?: unknown; start?: string } = {};
      try { holder = JSON.parse(readFileSync(path, 'utf8')); } catch { /* torn by a crash: stale */ }
      if (typeof holder.pid === 'number' && holder.pid !== process.pid && alive(holder.pid, holder.start)) throw new LockedError(dir, holder.pid);
      if (!lstatSync(path).isFile()) throw new Error(`${path} is not a file netplane made; refusing to remove it`);
      unlinkSync(path);   // the holder is gone (killed): its lock is stale
      continue;
    }
    try { writeSync(fd, me); fsyncSync(fd); } finally { closeSync(fd); }
    return () => {
      try { if (readFileSync(path, 'utf8') === me) unlinkSync(path); } catch { /* gone already */ }
    };
  }
  throw new Error(`${path}: could not take the lock (another daemon starting at the same moment?)`);
}

// ---- the API token ---------------------------------------------------------------------------------

// The bearer token of the TCP listener: made at first start (32 random bytes, 0600), read after.
// Written in hex: a token a user pastes after `--token` must not start with "-" (base64url's did one
// time in 64, and the CLI's parser then took it for an option), nor hold anything a shell quotes.
export function loadOrCreateToken(dir: string): string {
  const path = join(dir, TOKEN_FILE);
  let st: Stats | undefined;
  try { st = lstatSync(path); } catch { st = undefined; }
  if (st) {
    if (!st.isFile() || (euid() >= 0 && st.uid !== euid()) || (st.mode & 0o077)) {
      throw new Error(`${path} must be a regular file of this user readable by nobody else (0600); remove it to make a new token`);
    }
    const t = readFileSync(path, 'utf8').trim();
    if (t.length >= 32) return t;
  }
  const token = randomBytes(32).toString('hex');
  writeAtomic(dir, TOKEN_FILE, token + '\n');
  return token;
}

// ---- the ledger of what netplane created ----------------------------------------------------------

interface OwnedEntry { path: string; kind: 'socket' | 'capture'; dev?: number; ino?: number }

export class Owned {
  private entries = new Map<string, OwnedEntry>();

  // `dir` holds the ledger file; without it the ledger lives in memory (an SDK host).
  constructor(readonly dir?: string) {
    if (!dir) return;
    let list: OwnedEntry[] = [];
    try { list = JSON.parse(readFileSync(join(dir, OWNED_FILE), 'utf8')); } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${join(dir, OWNED_FILE)}: ${(e as Error).message}`);
    }
    for (const x of Array.isArray(list) ? list : []) if (x && typeof x.path === 'string') this.entries.set(x.path, x);
  }

  private save(): void {
    if (this.dir) writeAtomic(this.dir, OWNED_FILE, JSON.stringify([...this.entries.values()], null, 2) + '\n');
  }

  // Says (before making it) that netplane is about to create `path`.
  // Called when nothing is at `path`, so an older record of it no longer vouches for anything.
  intend(path: string, kind: OwnedEntry['kind']): void {
    const cur = this.entries.get(path);
    if (cur && cur.kind === kind && cur.ino === undefined) return;
    this.entries.set(path, { path, kind });
    this.save();
  }

  // Records the file netplane just made at `path`.
  made(path: string, kind: OwnedEntry['kind']): void {
    const st = lstatSync(path);
    this.entries.set(path, { path, kind, dev: st.dev, ino: st.ino });
    this.save();
  }

  forget(path: string): void {
    if (this.entries.delete(path)) this.save();
  }

  // Whether the file at `path` (its lstat) is the one netplane made there. An intent without an inode
  // (a crash between the two) vouches only for a file of the recorded kind.
  owns(path: string, st: Stats, kind: OwnedEntry['kind']): boolean {
    const e = this.entries.get(path);
    if (!e || e.kind !== kind) return false;
    const right = kind === 'socket' ? st.isSocket() : st.isFile();
    if (!right) return false;
    return e.ino === undefined || (e.dev === st.dev && e.ino === st.ino);
  }

  // Removes a unix socket netplane made, if it is still there and still the one it made, and forgets it.
  removeSocket(path: string): void {
    try {
      if (this.owns(path, lstatSync(path), 'socket')) unlinkSync(path);
    } catch { /* gone already (closing a listener removes its socket) */ }
    this.forget(path);
  }

  // Frees `path` for a new unix socket: nothing there, or a socket netplane made there (left by a
  // daemon that was killed) which is removed. Anything else is refused, never removed.
  clearSocket(path: string, field: string): void {
    let st: Stats;
    try { st = lstatSync(path); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') { this.intend(path, 'socket'); return; }
      throw new ModelError('InvalidArgument', field, `${path}: ${(e as Error).message}`);
    }
    if (!this.owns(path, st, 'socket')) {
      throw new ModelError('InvalidArgument', field, `${path} exists and netplane did not create it (${kindOf(st)}); it is left alone`);
    }
    unlinkSync(path);
    this.intend(path, 'socket');
  }
}

function kindOf(st: Stats): string {
  return st.isSymbolicLink() ? 'a symbolic link' : st.isFile() ? 'a regular file' : st.isDirectory() ? 'a directory' : st.isSocket() ? 'a socket' : 'a special file';
}

// ---- paths in the model ---------------------------------------------------------------------------

export interface Confinement {
  captureDir?: string;        // where captures go (absent: Capture is refused)
  socketDir?: string;         // where "unix:NAME" sockets go (absent: refused)
  reserved: string[];         // paths that can never be a target (state file, lock, token, ledger, API socket)
  owned: Owned;
  bind: BindPolicy;
}

function target(dir: string | undefined, name: string, field: string, what: string, c: Confinement): string {
  if (!dir) throw new ModelError('InvalidArgument', field, `this host has no ${what} (give the daemon a state directory, or a ${what} in its config)`);
  const path = resolve(dir, name);
  if (c.reserved.includes(path)) throw new ModelError('InvalidArgument', field, `${path} is netplane's own file and can never be a ${what === 'capture directory' ? 'capture' : 'socket'}`);
  return path;
}

export function socketPath(c: Confinement, name: string, field: string): string {
  return target(c.socketDir, name, field, 'sockets directory', c);
}

// Opens an endpoint's capture file `name` in the capture directory: a new file (0600, never through a
// symlink), or one netplane made before (a restart), appended to. Anything else is refused.
export function openCapture(c: Confinement, name: string, field: string): PcapWriter {
  const path = target(c.captureDir, name, field, 'capture directory', c);
  ownDirectory(c.captureDir!, 'the capture directory');
  let st: Stats | undefined;
  try { st = lstatSync(path); } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new ModelError('InvalidArgument', field, `${path}: ${(e as Error).message}`);
  }
  if (st && !c.owned.owns(path, st, 'capture')) {
    throw new ModelError('InvalidArgument', field, `${path} exists and netplane did not create it (${kindOf(st)}); it is not overwritten`);
  }
  let fd: number;
  try {
    if (st) {
      fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW);
      const now = fstatSync(fd);
      if (now.ino !== st.ino || now.dev !== st.dev) { closeSync(fd); throw new Error('replaced while opening'); }
      if (now.size < 24 || !isPcap(fd)) {
        closeSync(fd);
        throw new Error('is not the pcap file netplane wrote there; it is not overwritten');
      }
      return new PcapWriter(path, { fd, append: true });
    }
    c.owned.intend(path, 'capture');
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (e) {
    throw new ModelError('InvalidArgument', field, `${path}: ${(e as Error).message}`);
  }
  const w = new PcapWriter(path, { fd });
  c.owned.made(path, 'capture');
  return w;
}

function isPcap(fd: number): boolean {
  const b = Buffer.alloc(4);
  readSync(fd, b, 0, 4, 0);
  return b.readUInt32LE(0) === 0xa1b2c3d4 || b.readUInt32LE(0) === 0xa1b23c4d;
}

// ---- addresses ------------------------------------------------------------------------------------

export interface BindPolicy {
  addresses?: string[];        // non-loopback addresses transports may bind (the host's own)
  wildcard?: boolean;          // 0.0.0.0 and :: (every interface)
  privilegedPorts?: boolean;   // ports below 1024
}

const WILDCARD = new Set(['0.0.0.0', '::', '*', '']);

export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

// Checks an address a transport binds or sends to against the policy; `field` names it in the error.
export function checkAddress(p: BindPolicy, a: { host: string; port: number }, field: string, peer = false): void {
  const shown = `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
  if (WILDCARD.has(a.host)) {
    if (peer || !p.wildcard) throw new ModelError('InvalidArgument', field, `${shown} ${peer ? 'is no peer' : 'binds every interface, which exposes a switch port to the network'}; ${peer ? '' : 'the daemon config allows it with transports.allowWildcard'}`.replace(/; $/, ''));
  } else if (!isLoopback(a.host)) {
    if (!isIP(a.host)) throw new ModelError('InvalidArgument', field, `${shown}: the host must be an IP address or localhost`);
    if (!(p.addresses ?? []).includes(a.host)) throw new ModelError('InvalidArgument', field, `${shown} is not a loopback address; the daemon config allows others with transports.allowAddresses`);
  }
  if (!peer && a.port < 1024 && !p.privilegedPorts) throw new ModelError('InvalidArgument', field, `${shown} is a privileged port (below 1024); the daemon config allows them with transports.allowPrivilegedPorts`);
}
