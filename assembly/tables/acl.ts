// ACL rule sets, compiled by the control plane (src/compile/acl.ts) into a classifier blob in linear
// memory, and bound to a port and a direction with an explicit default action.
//
// Why a bit-vector classifier: only the first packet of a connection is classified (conntrack keeps
// the verdict), but that packet must not pay a linear scan of a thousand rules. Each field (protocol,
// local and remote port, local and remote address) is cut into elementary intervals at every rule
// boundary; each interval carries the bitset of the rules that match values in it, rules numbered by
// precedence. A packet costs one table lookup for the protocol, a binary search per other field, and
// an AND of five bitsets: the first set bit is the deciding rule. Cost grows with log(boundaries) and
// rules/64, not with rules.
//
// Blob (little-endian u32 unless noted; offsets from the blob's start):
//   0 magic 0x314c4341 ("ACL1")   4 rules   8 W: u64 words per bitset   12 actions (rules bytes:
//   1 allow, 0 block)   16 hits (rules x u64)   20 protocol table (256 x u32 bitset offset)
//   24, 28 local / remote port field   32, 36 local / remote IPv4 field   40, 44 local / remote IPv6
//   field   48 bitset pool   52 total bytes
// A u32 field: u32 n, then n ascending interval starts (the first is 0), then n bitset offsets. An
// IPv6 field: u32 n, u32 pad, n x (u64 hi, u64 lo) starts, n bitset offsets. A packet without ports
// (not TCP/UDP) looks its ports up as 65536, an interval only rules without port conditions match.

import * as arena from "../arena";

export const MAGIC: u32 = 0x314c4341;
export const NO_PORT_VALUE: u32 = 65536;
export const DIR_OUT: u32 = 0;   // from the endpoint (packets the port receives)
export const DIR_IN: u32 = 1;    // to the endpoint (packets the port sends)

export const ACTION_BLOCK: u32 = 0;
export const ACTION_ALLOW: u32 = 1;

// Per port and direction (8 bytes): u32 blob (0 = no rules), u8 default action, u8 bound.
export let bindBase: usize = 0;
// Bumped whenever a binding changes: connections classified under an older generation are
// classified again on their next packet (tables/flow.ts record offset 92).
export let generation: u32 = 1;

export function bytes(maxPorts: u32): u64 { return arena.span(maxPorts, 16); }
export function alloc(maxPorts: u32): void { bindBase = arena.take(maxPorts, 16); }

@inline export function binding(port: u32, dir: u32): usize { return bindBase + (<usize>port << 4) + (<usize>dir << 3); }
@inline export function bound(port: u32, dir: u32): bool { return load<u8>(binding(port, dir), 5) != 0; }

export function bind(port: u32, dir: u32, blob: usize, defaultAction: u32): void {
  let b = binding(port, dir);
  store<u32>(b, <u32>blob);
  store<u8>(b, <u8>defaultAction, 4);
  store<u8>(b, 1, 5);
  generation++;
}

export function unbind(port: u32, dir: u32): void {
  let b = binding(port, dir);
  store<u64>(b, 0);
  generation++;
}

// Checks a blob the host wrote before it is used: magic, sizes and every offset inside it, so a
// broken blob is refused at bind time and classify() never reads outside it.
export function valid(blob: usize, size: u32): bool {
  if (size < 56 || load<u32>(blob) != MAGIC || load<u32>(blob, 52) != size) return false;
  let n = load<u32>(blob, 4);
  let w = load<u32>(blob, 8);
  if (w != (n + 63) >> 6 || n == 0) return false;
  let setBytes = <u64>w * 8;
  let pool = load<u32>(blob, 48);
  if (!inside(load<u32>(blob, 12), <u64>n, size) || !inside(load<u32>(blob, 16), <u64>n * 8, size)) return false;
  let pt = load<u32>(blob, 20);
  if (!inside(pt, 1024, size)) return false;
  for (let i: u32 = 0; i < 256; i++) if (!bitset(load<u32>(blob + pt + i * 4), pool, setBytes, size)) return false;
  for (let f: u32 = 0; f < 4; f++) if (!field32ok(blob, load<u32>(blob + 24 + f * 4), pool, setBytes, size)) return false;
  for (let f: u32 = 0; f < 2; f++) if (!field128ok(blob, load<u32>(blob + 40 + f * 4), pool, setBytes, size)) return false;
  return true;
}
@inline function inside(off: u32, len: u64, size: u32): bool { return <u64>off + len <= <u64>size; }
@inline function bitset(off: u32, pool: u32, setBytes: u64, size: u32): bool {
  return off >= pool && inside(off, setBytes, size) && ((off - pool) & 7) == 0;
}
function field32ok(blob: usize, off: u32, pool: u32, setBytes: u64, size: u32): bool {
  if (!inside(off, 4, size)) return false;
  let n = load<u32>(blob + off);
  if (n == 0 || !inside(off + 4, <u64>n * 8, size) || load<u32>(blob + off + 4) != 0) return false;
  for (let i: u32 = 0; i < n; i++) {
    if (i > 0 && load<u32>(blob + off + 4 + i * 4) <= load<u32>(blob + off + i * 4)) return false;
    if (!bitset(load<u32>(blob + off + 4 + n * 4 + i * 4), pool, setBytes, size)) return false;
  }
  return true;
}
function field128ok(blob: usize, off: u32, pool: u32, setBytes: u64, size: u32): bool {
  if (!inside(off, 8, size)) return false;
  let n = load<u32>(blob + off);
  if (n == 0 || !inside(off + 8, <u64>n * 20, size)) return false;
  let s = blob + off + 8;
  if (load<u64>(s) != 0 || load<u64>(s, 8) != 0) return false;
  for (let i: u32 = 0; i < n; i++) {
    if (i > 0) {
      let ph = load<u64>(s + (i - 1) * 16), pl = load<u64>(s + (i - 1) * 16, 8);
      let h = load<u64>(s + i * 16), l = load<u64>(s + i * 16, 8);
      if (h < ph || (h == ph && l <= pl)) return false;
    }
    if (!bitset(load<u32>(s + n * 16 + i * 4), pool, setBytes, size)) return false;
  }
  return true;
}

// The bitset of the interval holding v in a u32 field.
@inline function field32(blob: usize, off: u32, v: u32): usize {
  let f = blob + off;
  let n = load<u32>(f);
  let lo: u32 = 0, hi = n;           // the answer is the last start <= v
  while (hi - lo > 1) {
    let mid = (lo + hi) >> 1;
    if (load<u32>(f + 4 + (<usize>mid << 2)) <= v) lo = mid;
    else hi = mid;
  }
  return blob + load<u32>(f + 4 + (<usize>n << 2) + (<usize>lo << 2));
}

@inline function field128(blob: usize, off: u32, vh: u64, vl: u64): usize {
  let f = blob + off;
  let n = load<u32>(f);
  let s = f + 8;
  let lo: u32 = 0, hi = n;
  while (hi - lo > 1) {
    let mid = (lo + hi) >> 1;
    let h = load<u64>(s + (<usize>mid << 4)), l = load<u64>(s + (<usize>mid << 4), 8);
    if (h < vh || (h == vh && l <= vl)) lo = mid;
    else hi = mid;
  }
  return blob + load<u32>(s + (<usize>n << 4) + (<usize>lo << 2));
}

// The deciding rule (its precedence index) for a packet, or -1 if none matches. Addresses are
// (hi, lo) as tables/lpm.ts holds them (IPv4 in lo).
export function classify(blob: usize, v6: bool, proto: u32, lhi: u64, llo: u64, rhi: u64, rlo: u64, lport: u32, rport: u32): i32 {
  let w = load<u32>(blob, 8);
  let bp = blob + load<u32>(blob + load<u32>(blob, 20) + (<usize>(proto & 0xff) << 2));
  let bl = field32(blob, load<u32>(blob, 24), lport);
  let br = field32(blob, load<u32>(blob, 28), rport);
  let al = v6 ? field128(blob, load<u32>(blob, 40), lhi, llo) : field32(blob, load<u32>(blob, 32), <u32>llo);
  let ar = v6 ? field128(blob, load<u32>(blob, 44), rhi, rlo) : field32(blob, load<u32>(blob, 36), <u32>rlo);
  for (let i: u32 = 0; i < w; i++) {
    let o = <usize>i << 3;
    let x = load<u64>(bp + o) & load<u64>(bl + o) & load<u64>(br + o) & load<u64>(al + o) & load<u64>(ar + o);
    if (x != 0) return <i32>((i << 6) + <u32>ctz(x));
  }
  return -1;
}

@inline export function action(blob: usize, rule: u32): u32 { return <u32>load<u8>(blob + load<u32>(blob, 12) + rule); }
@inline export function hit(blob: usize, rule: u32): void {
  let a = blob + load<u32>(blob, 16) + (<usize>rule << 3);
  store<u64>(a, load<u64>(a) + 1);
}
