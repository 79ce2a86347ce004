// Stage: a routed IPv4 packet larger than its egress interface's MTU, without DF, is fragmented by
// the router (RFC 791 §3.2, as Linux's ip_fragment): each fragment carries the datagram's
// identification, an offset in 8-byte units and MF on all but the last (the last keeps the MF of the
// packet, which may itself be a fragment), the first fragment the whole IP header and later ones only
// the options whose copy flag is set; every header gets its own checksum. The packet has been
// translated already, so the fragments need nothing else. The fragments are built in tx memory
// (bounded: a full buffer is a counted drop) and leave by L2 forwarding like the packet would have.
//
// With DF set, and for IPv6 (a router never fragments IPv6, RFC 8200 §5), the caller sends ICMP
// fragmentation needed / Packet Too Big instead and drops the packet as mtu_exceeded.
import { Meta, FLAG_FRAGMENT, FLAG_LATER_FRAGMENT } from "../packet";
import { Iface } from "../router";
import { Reason } from "../reasons";
import * as ipv4 from "../wire/ipv4";
import * as eth from "../wire/ethernet";
import * as checksum from "../wire/checksum";
import { storeMac, get8, set16 } from "../wire/bytes";
import { drop, bump, Stat } from "../counters";
import * as counters from "../counters";
import { l2forward, dstHash, NO_PORT } from "./l2forward";
import * as tx from "../tx";

// The header of the fragments after the first (at most 60 bytes).
const laterHeader: usize = memory.data(64, 8);

export function fragment4(m: Meta, out: Iface, nextHop: u64, now: u32): void {
  let ip = m.frame + m.l3;
  let hl = ipv4.headerLen(ip);
  let payload = ipv4.totalLength(ip) - hl;
  let hl2 = laterHeaderOf(ip, hl);
  let mtu = out.mtu;
  if (mtu < hl + 8) {
    drop(m.inPort, Reason.MtuExceeded);
    return;
  }
  let base = ipv4.fragOffset(ip) << 3;
  let moreAfter = ipv4.moreFragments(ip);
  storeMac(m.frame + eth.DST, nextHop);
  storeMac(m.frame + eth.SRC, out.mac);
  counters.batchRouted += 1;
  let orig = m.frame;
  let flags = m.flags | FLAG_FRAGMENT;
  let l4 = m.l4;
  m.network = <u32>out.network;
  m.vlan = <u32>out.vlan;
  m.dstHash = dstHash(m);
  let off: u32 = 0;
  while (off < payload) {
    let h = off == 0 ? hl : hl2;
    let chunk = (mtu - h) & ~7;
    let last = payload - off <= chunk;
    if (last) chunk = payload - off;
    let flen = m.l3 + h + chunk;
    let p = tx.reserve(flen);
    if (p == 0) {
      drop(m.inPort, Reason.TxBufferFull);
      return;
    }
    memory.copy(p, orig, m.l3);
    let o = p + m.l3;
    memory.copy(o, off == 0 ? ip : laterHeader, h);
    ipv4.setTotalLength(o, h + chunk);
    let ff = ((base + off) >> 3) | (last && !moreAfter ? 0 : ipv4.FLAG_MF);
    set16(o + ipv4.FLAGS_FRAG, ff);
    ipv4.setChecksum(o, 0);
    ipv4.setChecksum(o, checksum.compute(o, h));
    memory.copy(o + h, ip + hl + off, chunk);
    m.frame = p;
    m.len = flen;
    m.untagged = 0;
    m.retagged = 0;
    // What a later stage (an endpoint's In ACL) reads: each piece is a fragment, the first one with
    // the transport header (same offset), the others without.
    let first = off == 0 && l4 != 0;
    m.flags = first ? flags : flags | FLAG_LATER_FRAGMENT;
    m.l4 = first ? l4 : 0;
    m.l4len = chunk;
    bump(Stat.FragmentsMade);
    l2forward(m, now, NO_PORT);
    off += chunk;
  }
}

// Builds the later fragments' header from the packet's: the fixed 20 bytes and the options with the
// copy flag (type bit 0x80), padded with End of Option List to a multiple of 4. Returns its length.
function laterHeaderOf(ip: usize, hl: u32): u32 {
  memory.copy(laterHeader, ip, ipv4.MIN_LEN);
  let n: u32 = ipv4.MIN_LEN;
  let i: u32 = ipv4.MIN_LEN;
  // The options were checked by parse (wire/ipv4.ts): every length is >= 2 and inside the header.
  while (i < hl) {
    let t = get8(ip + i);
    if (t == 0) break;
    if (t == 1) { i++; continue; }
    let ol = get8(ip + i + 1);
    if (t & 0x80) {
      memory.copy(laterHeader + n, ip + i, ol);
      n += ol;
    }
    i += ol;
  }
  while (n & 3) {
    store<u8>(laterHeader + n, 0);
    n++;
  }
  store<u8>(laterHeader, <u8>(0x40 | (n >> 2)));
  return n;
}
