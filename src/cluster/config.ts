// The daemon config's `cluster` setting, checked before anything connects: errors name the field
// (cluster.etcd[0], cluster.leaseTtl) in the words of docs/model.md. Kept apart from the client
// (index.ts) so the daemon can check a config without loading the etcd client.
import { readFileSync } from 'node:fs';

export interface ClusterConfig {
  etcd: string[];          // the etcd members' client URLs, http:// or https://
  prefix?: string;         // where netplane's keys live (default /netplane)
  host: string;            // this member's name: 1-63 of [a-z0-9-], not starting or ending with '-'
  leaseTtl?: number;       // seconds, 2..3600 (default 10): how soon a dead host disappears
  username?: string;       // etcd authentication (both or neither)
  password?: string;
  caFile?: string;         // a PEM CA bundle for https:// members (default: the system's roots)
}

export interface CheckedCluster extends Required<Pick<ClusterConfig, 'etcd' | 'prefix' | 'host' | 'leaseTtl'>> {
  username?: string;
  password?: string;
  ca?: Buffer;
}

export const DEFAULT_PREFIX = '/netplane';
export const DEFAULT_LEASE_TTL = 10;
const HOST = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
// Path segments of [A-Za-z0-9._-], each starting with a letter or digit; no trailing slash.
const PREFIX = /^(\/[A-Za-z0-9][A-Za-z0-9._-]*)+$/;

export function checkCluster(c: unknown): CheckedCluster {
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new Error('cluster: must be an object { etcd: [URL], host, prefix?, leaseTtl?, username?, password?, caFile? }');
  const o = c as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!['etcd', 'prefix', 'host', 'leaseTtl', 'username', 'password', 'caFile'].includes(k)) throw new Error(`cluster.${k}: unknown setting (etcd, prefix, host, leaseTtl, username, password, caFile)`);
  }
  if (!Array.isArray(o.etcd) || o.etcd.length === 0) throw new Error('cluster.etcd: must be a list of one or more etcd client URLs, e.g. ["http://10.0.0.1:2379"]');
  const etcd = o.etcd.map((u, i) => {
    let url: URL;
    try { url = new URL(String(u)); } catch { throw new Error(`cluster.etcd[${i}]: ${JSON.stringify(u)} is not a URL`); }
    if (typeof u !== 'string' || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new Error(`cluster.etcd[${i}]: ${JSON.stringify(u)} is not an http:// or https:// URL`);
    if (url.username || url.password) throw new Error(`cluster.etcd[${i}]: credentials go in cluster.username and cluster.password, not in the URL`);
    if (!url.port) throw new Error(`cluster.etcd[${i}]: ${JSON.stringify(u)} needs the port (etcd's client port is usually 2379)`);
    if (url.pathname !== '/' || url.search || url.hash) throw new Error(`cluster.etcd[${i}]: ${JSON.stringify(u)} must be scheme://host:port only`);
    return `${url.protocol}//${url.host}`;
  });
  const schemes = new Set(etcd.map((u) => u.split(':')[0]));
  if (schemes.size > 1) throw new Error('cluster.etcd: all members http:// or all https://, not both');
  if (typeof o.host !== 'string' || !HOST.test(o.host)) throw new Error(`cluster.host: must be this member's name, 1-63 of a-z, 0-9 and '-' (not first or last), got ${JSON.stringify(o.host)}`);
  const prefix = o.prefix ?? DEFAULT_PREFIX;
  if (typeof prefix !== 'string' || !PREFIX.test(prefix) || prefix.length > 200) throw new Error(`cluster.prefix: must be a key path like /netplane (segments of A-Z a-z 0-9 . _ -, no trailing /), got ${JSON.stringify(prefix)}`);
  const leaseTtl = o.leaseTtl ?? DEFAULT_LEASE_TTL;
  if (!Number.isInteger(leaseTtl) || (leaseTtl as number) < 2 || (leaseTtl as number) > 3600) throw new Error(`cluster.leaseTtl: must be a whole number of seconds from 2 to 3600, got ${JSON.stringify(leaseTtl)}`);
  if ((o.username === undefined) !== (o.password === undefined)) throw new Error(`cluster.${o.username === undefined ? 'username' : 'password'}: give both cluster.username and cluster.password, or neither`);
  if (o.username !== undefined && (typeof o.username !== 'string' || !o.username)) throw new Error('cluster.username: must be a non-empty string');
  if (o.password !== undefined && typeof o.password !== 'string') throw new Error('cluster.password: must be a string');
  let ca: Buffer | undefined;
  if (o.caFile !== undefined) {
    if (typeof o.caFile !== 'string' || !o.caFile) throw new Error('cluster.caFile: must be the path of a PEM file');
    if (!schemes.has('https')) throw new Error('cluster.caFile: only for https:// members');
    try { ca = readFileSync(o.caFile); } catch (e) { throw new Error(`cluster.caFile: ${(e as Error).message}`); }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`cluster.caFile: ${o.caFile} holds no PEM certificate`);
  }
  return { etcd, prefix, host: o.host, leaseTtl: leaseTtl as number, username: o.username as string | undefined, password: o.password as string | undefined, ca };
}
