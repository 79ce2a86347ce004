// Compiles an ACL rule set (HNS semantics) into the classifier blob the dataplane reads
// (assembly/tables/acl.ts says why it is a bit-vector classifier and gives the layout).
//
// Precedence: a lower Priority wins; at equal priority a Block wins over an Allow (the safe choice,
// and the only one that does not depend on the order rules were written in); at equal priority and
// action the rule given first wins. Rules are numbered in that order, so the first set bit of the
// AND of the field bitsets is the deciding rule.
//
// Fields: Protocols (numbers; 256 or absent = any), Local/RemoteAddresses (comma-separated CIDRs,
// IPv4 and IPv6; absent = any address of either family; a rule that names only IPv4 prefixes never
// matches IPv6 and vice versa), Local/RemotePorts (comma-separated ports and ranges "a-b", kept as
// ranges; only TCP and UDP packets have ports, so a rule with a port condition matches only them).
import { parseIPv4, parseIPv6 } from '../frames.js';

export type AclAction = 'Allow' | 'Block';
export type AclDirection = 'In' | 'Out';

export interface AclRule {
  Id?: string;
  Action: AclAction;
  Direction: AclDirection;
  Priority: number;
  Protocols?: string | number | number[];
  LocalAddresses?: string | string[];
  RemoteAddresses?: string | string[];
  LocalPorts?: string | string[];
  RemotePorts?: string | string[];
}

export class AclError extends Error {
  constructor(readonly field: string, readonly reason: string) {
    super(`${field}: ${reason}`);
    this.name = 'AclError';
  }
}

const MAGIC = 0x314c4341;
const NO_PORT = 65536;
const V4_MAX = 0xffffffffn;
const V6_MAX = (1n << 128n) - 1n;

type Range = [bigint, bigint];

interface Normal {
  allow: boolean;
  protos: boolean[] | null;          // null = any
  lports: Range[] | null;            // null = any (including packets without ports)
  rports: Range[] | null;
  l4: Range[] | null; l6: Range[] | null;   // null = any; [] = none of that family
  r4: Range[] | null; r6: Range[] | null;
}

const list = (v: string | string[] | undefined): string[] =>
  v === undefined ? [] : (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter((s) => s !== '');

function protocols(v: AclRule['Protocols'], field: string): boolean[] | null {
  const items = v === undefined ? [] : Array.isArray(v) ? v : typeof v === 'number' ? [v] : list(v).map(Number);
  if (items.length === 0) return null;
  const set = new Array<boolean>(256).fill(false);
  for (const p of items) {
    if (!Number.isInteger(p) || p < 0 || p > 256) throw new AclError(field, `protocol ${p} is not a number from 0 to 256`);
    if (p === 256) return null;
    set[p] = true;
  }
  return set;
}

function ports(v: string | string[] | undefined, field: string): Range[] | null {
  const items = list(v);
  if (items.length === 0) return null;
  return items.map((s) => {
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(s);
    if (!m) throw new AclError(field, `"${s}" is not a port or a range a-b`);
    const lo = Number(m[1]), hi = Number(m[2] ?? m[1]);
    if (lo > 65535 || hi > 65535 || lo > hi) throw new AclError(field, `"${s}" is not a range of ports 0-65535`);
    return [BigInt(lo), BigInt(hi)] as Range;
  });
}

function bytesToBig(b: Uint8Array): bigint {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

function addresses(v: string | string[] | undefined, field: string): { v4: Range[] | null; v6: Range[] | null } {
  const items = list(v);
  if (items.length === 0) return { v4: null, v6: null };
  const v4: Range[] = [], v6: Range[] = [];
  for (const s of items) {
    const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(s);
    if (!m) throw new AclError(field, `"${s}" is not an address or a prefix`);
    const six = m[1].includes(':');
    let addr: bigint;
    try { addr = bytesToBig(six ? parseIPv6(m[1]) : parseIPv4(m[1])); } catch (e) { throw new AclError(field, (e as Error).message); }
    const bits = six ? 128 : 32;
    const len = m[2] === undefined ? bits : Number(m[2]);
    if (len > bits) throw new AclError(field, `"${s}": prefix length over ${bits}`);
    const host = (1n << BigInt(bits - len)) - 1n;
    const lo = addr & ~host & (six ? V6_MAX : V4_MAX);
    (six ? v6 : v4).push([lo, lo | host]);
  }
  return { v4, v6 };
}

export function normalize(r: AclRule, i: number): Normal {
  const f = (name: string) => `rules[${i}].${name}`;
  if (r.Action !== 'Allow' && r.Action !== 'Block') throw new AclError(f('Action'), `must be "Allow" or "Block", got ${JSON.stringify(r.Action)}`);
  if (r.Direction !== 'In' && r.Direction !== 'Out') throw new AclError(f('Direction'), `must be "In" or "Out", got ${JSON.stringify(r.Direction)}`);
  if (!Number.isInteger(r.Priority) || r.Priority < 0 || r.Priority > 65535) throw new AclError(f('Priority'), `must be an integer from 0 to 65535, got ${r.Priority}`);
  const la = addresses(r.LocalAddresses, f('LocalAddresses'));
  const ra = addresses(r.RemoteAddresses, f('RemoteAddresses'));
  return {
    allow: r.Action === 'Allow',
    protos: protocols(r.Protocols, f('Protocols')),
    lports: ports(r.LocalPorts, f('LocalPorts')),
    rports: ports(r.RemotePorts, f('RemotePorts')),
    l4: la.v4, l6: la.v6, r4: ra.v4, r6: ra.v6,
  };
}

// Orders rules by precedence; returns the indexes into `rules`.
export function precedence(rules: AclRule[]): number[] {
  return rules.map((_, i) => i).sort((a, b) =>
    rules[a].Priority - rules[b].Priority ||
    (rules[a].Action === 'Block' ? 0 : 1) - (rules[b].Action === 'Block' ? 0 : 1) ||
    a - b);
}

// Elementary intervals of a field over [0, max]: their starts, and for each the rules matching it.
// `ranges(rule)` is null for "any value", [] for "no value".
function intervals(n: number, max: bigint, ranges: (i: number) => Range[] | null): { starts: bigint[]; sets: Uint32Array[] } {
  const cuts = new Set<bigint>([0n]);
  for (let i = 0; i < n; i++) for (const [lo, hi] of ranges(i) ?? []) { cuts.add(lo); if (hi < max) cuts.add(hi + 1n); }
  const starts = [...cuts].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const words = Math.ceil(n / 32);
  const sets = starts.map(() => new Uint32Array(words));
  for (let i = 0; i < n; i++) {
    const rs = ranges(i);
    const bit = 1 << (i & 31), w = i >> 5;
    if (rs === null) { for (const s of sets) s[w] |= bit; continue; }
    for (const [lo, hi] of rs) {
      // Intervals are cut at every range edge, so a range covers whole intervals: from the one that
      // starts at lo to the last one starting at or before hi.
      let k = lowerBound(starts, lo);
      while (k < starts.length && starts[k] <= hi) { sets[k][w] |= bit; k++; }
    }
  }
  return { starts, sets };
}

function lowerBound(a: bigint[], v: bigint): number {
  let lo = 0, hi = a.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (a[mid] < v) lo = mid + 1; else hi = mid; }
  return lo;
}

export interface CompiledAcl {
  bytes: Uint8Array;
  ruleIds: string[];   // by precedence index: the Id of the rule (or its position)
}

// Compiles the rules of one direction. Rules of the other direction must be filtered out before.
export function compileAcl(rules: AclRule[]): CompiledAcl {
  if (rules.length === 0) throw new AclError('rules', 'an empty rule set compiles to nothing: bind no rules and a default action instead');
  const normal = rules.map(normalize);
  const order = precedence(rules);
  const ns = order.map((i) => normal[i]);
  const n = ns.length;
  const W = Math.ceil(n / 64);

  // Bitset pool, deduplicated: most intervals of a large rule set share a handful of sets.
  const pool: Uint32Array[] = [];
  const poolIndex = new Map<string, number>();
  const intern = (s: Uint32Array): number => {
    const full = new Uint32Array(W * 2);
    full.set(s);
    const key = full.join(',');
    let k = poolIndex.get(key);
    if (k === undefined) { k = pool.length; pool.push(full); poolIndex.set(key, k); }
    return k;
  };

  const protoSets = Array.from({ length: 256 }, (_, p) => {
    const s = new Uint32Array(Math.ceil(n / 32));
    ns.forEach((r, i) => { if (r.protos === null || r.protos[p]) s[i >> 5] |= 1 << (i & 31); });
    return intern(s);
  });
  const f32 = (get: (r: Normal) => Range[] | null, max: bigint) => {
    const { starts, sets } = intervals(n, max, (i) => get(ns[i]));
    return { starts, refs: sets.map(intern) };
  };
  // Ports: the value 65536 stands for "no ports"; a rule with a port condition never matches it.
  const lp = f32((r) => r.lports, BigInt(NO_PORT));
  const rp = f32((r) => r.rports, BigInt(NO_PORT));
  const l4 = f32((r) => r.l4 ?? (r.l6 ? [] : null), V4_MAX);
  const r4 = f32((r) => r.r4 ?? (r.r6 ? [] : null), V4_MAX);
  const l6 = f32((r) => r.l6 ?? (r.l4 ? [] : null), V6_MAX);
  const r6 = f32((r) => r.r6 ?? (r.r4 ? [] : null), V6_MAX);

  // Layout.
  const align8 = (x: number) => (x + 7) & ~7;
  let off = 56;
  const offActions = off; off = align8(off + n);
  const offHits = off; off += n * 8;
  const offProto = off; off += 1024;
  const field32Size = (f: { starts: bigint[] }) => 4 + f.starts.length * 8;
  const field128Size = (f: { starts: bigint[] }) => 8 + f.starts.length * 20;
  const offLP = off; off = align8(off + field32Size(lp));
  const offRP = off; off = align8(off + field32Size(rp));
  const offL4 = off; off = align8(off + field32Size(l4));
  const offR4 = off; off = align8(off + field32Size(r4));
  const offL6 = off; off = align8(off + field128Size(l6));
  const offR6 = off; off = align8(off + field128Size(r6));
  const offPool = off; off += pool.length * W * 8;
  const bytes = new Uint8Array(off);
  const v = new DataView(bytes.buffer);
  const u32 = (o: number, x: number) => v.setUint32(o, x, true);
  [MAGIC, n, W, offActions, offHits, offProto, offLP, offRP, offL4, offR4, offL6, offR6, offPool, off].forEach((x, i) => u32(i * 4, x));
  ns.forEach((r, i) => { bytes[offActions + i] = r.allow ? 1 : 0; });
  const setOff = (k: number) => offPool + k * W * 8;
  protoSets.forEach((k, p) => u32(offProto + p * 4, setOff(k)));
  const write32 = (o: number, f: { starts: bigint[]; refs: number[] }) => {
    const c = f.starts.length;
    u32(o, c);
    f.starts.forEach((s, i) => u32(o + 4 + i * 4, Number(s)));
    f.refs.forEach((k, i) => u32(o + 4 + c * 4 + i * 4, setOff(k)));
  };
  const write128 = (o: number, f: { starts: bigint[]; refs: number[] }) => {
    const c = f.starts.length;
    u32(o, c);
    f.starts.forEach((s, i) => {
      v.setBigUint64(o + 8 + i * 16, s >> 64n, true);
      v.setBigUint64(o + 8 + i * 16 + 8, s & 0xffffffffffffffffn, true);
    });
    f.refs.forEach((k, i) => u32(o + 8 + c * 16 + i * 4, setOff(k)));
  };
  write32(offLP, lp); write32(offRP, rp); write32(offL4, l4); write32(offR4, r4);
  write128(offL6, l6); write128(offR6, r6);
  pool.forEach((s, k) => bytes.set(new Uint8Array(s.buffer), setOff(k)));
  return { bytes, ruleIds: order.map((i) => rules[i].Id ?? String(i)) };
}

// Reads the per-rule hit counters back out of a compiled blob in memory.
export function readHits(dv: DataView, blob: number): number[] {
  const n = dv.getUint32(blob + 4, true);
  const offHits = dv.getUint32(blob + 16, true);
  return Array.from({ length: n }, (_, i) => Number(dv.getBigUint64(blob + offHits + i * 8, true)));
}
