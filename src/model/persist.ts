// The state directory: the model lives in `state.json` there, written atomically (a temporary file
// in the same directory, fsync, rename over the old one, fsync of the directory), so a crash at any
// moment leaves either the old state or the new one, never a torn file. Loading refuses, with an
// error that names the file, a file that is not valid JSON, not a netplane state, from a newer
// version, or inconsistent: a silent reset would lose every object.
import { openSync, writeSync, fsyncSync, closeSync, renameSync, readFileSync, mkdirSync, existsSync, unlinkSync, constants } from 'node:fs';
import { join } from 'node:path';
import type { ModelState, RemoteEndpointSpec } from './types.js';
import type { DhcpState } from '../dhcp.js';
import { emptyState, checkState } from './store.js';
import { validateNetwork, validateEndpoint, validateNamespace, validateLoadBalancer, validateRemoteEndpointSpec, ModelError } from './validate.js';

export const STATE_VERSION = 1;
export const STATE_FILE = 'state.json';
// The DHCP servers' leases, by network ID (DhcpServer.toJSON), beside the model and written the same
// way; a file there that is not netplane's lease file is refused at start, never overwritten.
export const LEASES_FILE = 'dhcp-leases.json';
export const LEASES_VERSION = 1;

export class StateFileError extends Error {
  constructor(readonly file: string, reason: string) {
    super(`${file}: ${reason}`);
    this.name = 'StateFileError';
  }
}

export function saveState(dir: string, state: ModelState): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeAtomic(dir, STATE_FILE, JSON.stringify({ netplane: 'state', version: STATE_VERSION, ...state }, null, 2) + '\n');
}

// Writes a file atomically: a temporary file beside it (".<name>.<pid>.tmp", 0600, never through a
// symlink), fsync, rename over the old one, fsync of the directory.
export function writeAtomic(dir: string, name: string, body: string): void {
  const tmp = join(dir, `.${name}.${process.pid}.tmp`);
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
  try {
    writeSync(fd, body);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, join(dir, name));
  } catch (e) {
    unlinkSync(tmp);
    throw e;
  }
  const d = openSync(dir, 'r');
  try { fsyncSync(d); } finally { closeSync(d); }
}

// A netplane file ({ netplane: kind, version, ... }): undefined when there is none; refused, naming
// the file, when it is not JSON, is not netplane's file of that kind, or comes from a newer netplane.
function readOwn(file: string, kind: string, notOurs: string, current: number, versionWord = 'version'): Record<string, unknown> | undefined {
  if (!existsSync(file)) return undefined;
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new StateFileError(file, `corrupt: not valid JSON (${(e as Error).message}); not loaded, nothing was changed`);
  }
  if (typeof doc !== 'object' || doc === null || doc.netplane !== kind) throw new StateFileError(file, notOurs);
  if (typeof doc.version !== 'number') throw new StateFileError(file, 'has no version');
  if (doc.version > current) throw new StateFileError(file, `written by a newer netplane (${versionWord} ${doc.version}; this one reads ${current})`);
  return doc;
}

export function loadState(dir: string): ModelState {
  const file = join(dir, STATE_FILE);
  const doc = readOwn(file, 'state', 'not a netplane state file', STATE_VERSION, 'state version');
  if (!doc) return emptyState();
  const lists: Array<[keyof ModelState, (v: unknown) => unknown]> = [
    ['networks', validateNetwork], ['endpoints', validateEndpoint], ['namespaces', validateNamespace], ['loadBalancers', validateLoadBalancer],
  ];
  const state = emptyState();
  try {
    for (const [k, validate] of lists) {
      const items = doc[k] ?? [];
      if (!Array.isArray(items)) throw new ModelError('InvalidArgument', k, 'must be an array');
      (state[k] as unknown[]) = items.map((x, i) => {
        try { return validate(x); } catch (e) {
          if (e instanceof ModelError) throw new ModelError(e.code, `${k}[${i}].${e.field}`, e.reason);
          throw e;
        }
      });
    }
    checkState(state);
  } catch (e) {
    if (e instanceof ModelError) throw new StateFileError(file, `inconsistent: ${e.field}: ${e.reason}`);
    throw e;
  }
  return state;
}

export function saveLeases(dir: string, leases: Record<string, DhcpState>): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeAtomic(dir, LEASES_FILE, JSON.stringify({ netplane: 'dhcp-leases', version: LEASES_VERSION, networks: leases }) + '\n');
}

// The leases file's networks (each one checked by its server's restore), or {} when there is none.
export function loadLeases(dir: string): Record<string, DhcpState> {
  const file = join(dir, LEASES_FILE);
  const doc = readOwn(file, 'dhcp-leases', 'not a netplane DHCP lease file (netplane writes this name; move it away)', LEASES_VERSION);
  if (!doc) return {};
  const n = doc.networks;
  if (typeof n !== 'object' || n === null || Array.isArray(n)) throw new StateFileError(file, 'networks: must be an object (network ID: leases)');
  return n as Record<string, DhcpState>;
}

// The remote endpoints the cluster handed the Host (Host.setRemoteEndpoints), by source, beside the
// model and written the same way: a restart while the store is unreachable starts with the last view
// it had (stale, never empty). Never in state.json: they are other hosts' endpoints, not this one's
// objects. A file of that name that is not netplane's cluster view is refused at start, never
// overwritten.
export const CLUSTER_FILE = 'cluster-view.json';
export const CLUSTER_VERSION = 1;

export function saveClusterView(dir: string, sources: Record<string, RemoteEndpointSpec[]>): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeAtomic(dir, CLUSTER_FILE, JSON.stringify({ netplane: 'cluster-view', version: CLUSTER_VERSION, sources }) + '\n');
}

// The view's sources, each entry checked (a malformed one refuses the file, naming it), or {} when
// there is no file.
export function loadClusterView(dir: string): Record<string, RemoteEndpointSpec[]> {
  const file = join(dir, CLUSTER_FILE);
  const doc = readOwn(file, 'cluster-view', 'not a netplane cluster view file (netplane writes this name; move it away)', CLUSTER_VERSION);
  if (!doc) return {};
  const s = doc.sources;
  if (typeof s !== 'object' || s === null || Array.isArray(s)) throw new StateFileError(file, 'sources: must be an object (source: remote endpoints)');
  const out: Record<string, RemoteEndpointSpec[]> = {};
  try {
    for (const [source, list] of Object.entries(s)) {
      if (!Array.isArray(list)) throw new ModelError('InvalidArgument', `sources.${source}`, 'must be an array');
      out[source] = list.map((x, i) => validateRemoteEndpointSpec(x, `sources.${source}[${i}]`));
    }
  } catch (e) {
    if (e instanceof ModelError) throw new StateFileError(file, `inconsistent: ${e.field}: ${e.reason}`);
    throw e;
  }
  return out;
}
