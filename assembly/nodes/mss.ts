// Stage: TCP MSS clamping, as a Linux router's `nft ... tcp flags & (syn|rst) == syn tcp option
// maxseg size set rt mtu` (or iptables' TCPMSS --clamp-mss-to-pmtu / --set-mss) in its forward chain
// on both interfaces. A host picks its MSS from its own link's MTU; behind a smaller link (a tunnel,
// PPPoE, a VPN, an overlay) full-sized segments are too big, and when the ICMP errors that path MTU
// discovery needs are filtered somewhere, the connection stalls after its handshake. Lowering the MSS
// option of the handshake makes both ends send segments that fit.
//
// What is clamped: a routed TCP SYN or SYN-ACK (SYN set, RST clear), IPv4 or IPv6, whose ingress or
// egress router interface has a clamp (a network's clamp thus covers both directions of every
// connection routed in or out of it). The limit is the smaller of the two interfaces' settings; an
// interface's setting is either a fixed MSS or MSS_CLAMP_MTU: the smaller of the ingress and egress
// MTUs less 40 (IPv4 + TCP headers) or 60 (IPv6 + TCP), as nft's `rt mtu` takes the smaller of the
// route's MTU and the reverse route's. Only the first MSS option (kind 2, length 4) counts, and it is
// only ever lowered (raising it could stall the connection: as Linux). The value is rewritten in
// place and the TCP checksum updated incrementally (RFC 1624); the segment's length does not change.
// It runs after NAT, on the packet as it leaves.
//
// What is not done, and why:
//   - A SYN without an MSS option is left as it is. Linux's TCPMSS adds one (min(limit, 536) for IPv4,
//     1220 for IPv6) when the header has room; its receiver assumes 536 / 1220 (RFC 9293 §3.7.1, RFC
//     8200 §8.3) without one, which is no more than any clamp netplane accepts for IPv4 (536 and up),
//     so the option would change nothing there, and growing the segment is not worth its cost here.
//     (nft's `tcp option maxseg size set`, the reference in test/linux-diff.test.ts, adds none either.)
//   - Options are walked as the receiver does (wire/tcp.ts firstOption/nextOption): the walk stops at
//     End of Option List. Linux's TCPMSS and nft skip End as a one-byte option and rewrite an MSS
//     option after it, which no receiver reads. Malformed options never get here: parse dropped the
//     segment as tcp_bad_option.
//   - A segment whose checksum is CHECKSUM_PARTIAL (an offloaded vnet frame: the checksum field holds
//     only the pseudo-header sum) must not get the adjustment; the caller says so with `partial`.
import { Iface, MSS_CLAMP_MTU } from "../router";
import * as tcp from "../wire/tcp";
import * as checksum from "../wire/checksum";
import { get8, get16, set16 } from "../wire/bytes";
import { bump, Stat } from "../counters";

const OPT_MSS: u32 = 2;
const OPT_MSS_LEN: u32 = 4;
const V4_HEADERS: u32 = 40;
const V6_HEADERS: u32 = 60;

// Whether a TCP segment routed from `fin` to `out` may need clamping: one compare on the fast path.
@inline export function wanted(fin: Iface, out: Iface): bool {
  return (<u32>fin.mssClamp | <u32>out.mssClamp) != 0;
}

// Clamps the MSS option of the TCP segment at l4 (header checked by parse), if it is a SYN or SYN-ACK.
export function clampMss(l4: usize, fin: Iface, out: Iface, v6: bool, partial: bool = false): void {
  if ((tcp.flags(l4) & (tcp.SYN | tcp.RST)) != tcp.SYN) return;
  let hl = tcp.headerLen(l4);
  if (hl <= tcp.MIN_LEN) return;
  let mtu = min(fin.mtu, out.mtu);
  let headers = v6 ? V6_HEADERS : V4_HEADERS;
  let byMtu = mtu > headers ? mtu - headers : 0;
  let limit = min(setting(fin.mssClamp, byMtu), setting(out.mssClamp, byMtu));
  for (let o = tcp.firstOption(l4), e = l4 + hl; o != 0; o = tcp.nextOption(o, e)) {
    if (get8(o) != OPT_MSS || get8(o + 1) != OPT_MSS_LEN) continue;
    let old = get16(o + 2);
    if (old <= limit) return;
    set16(o + 2, limit);
    if (!partial) {
      // A value at an odd offset from the header's start straddles two checksum words: it adds to the
      // sum byte-swapped (RFC 1071 §2(B)). (Linux's TCPMSS and nft leave it unswapped, so they send a
      // wrong checksum after a NOP-first layout: docs/model.md.)
      let odd = ((o + 2 - l4) & 1) != 0;
      let a = odd ? <u32>bswap<u16>(<u16>old) : old;
      let b = odd ? <u32>bswap<u16>(<u16>limit) : limit;
      tcp.setChecksum(l4, checksum.adjust16(tcp.checksum(l4), a, b));
    }
    bump(Stat.MssClamped);
    return;
  }
}

// An interface's setting as a limit (0xffffffff for none).
@inline function setting(s: u16, byMtu: u32): u32 {
  if (s == 0) return 0xffffffff;
  return s == MSS_CLAMP_MTU ? byMtu : <u32>s;
}
