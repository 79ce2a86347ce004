// Stage: L2 forwarding. A known unicast destination goes to its port; broadcast, multicast and
// unknown unicast are flooded to every member port of the broadcast domain except the ingress port.
// A frame never leaves by its ingress port and never crosses into another domain.
//
// The egress side of the VLAN rules: a frame leaves untagged on access ports and on a trunk's native
// VLAN, tagged with its domain's VID elsewhere. The frame is rewritten at most twice per packet (one
// untagged and one tagged variant, built on first use into tx memory); a port that wants the frame as
// it arrived gets the rx bytes themselves.
//
// Reserved group addresses. 01:80:c2:00:00:00-0f are link-local by IEEE 802.1D Table 7-10 and
// 802.1Q §8.6.3: the protocols sent there (PAUSE, LACP/slow protocols, 802.1X EAPOL, LLDP, MVRP...)
// speak to the link partner, so a bridge consumes or discards them, never relays them; relaying LACP
// or PAUSE between ports would bind or stall links that never negotiated with each other. We do what
// the Linux bridge's br_handle_frame does with STP off (netplane runs no STP): 00 (the STP BPDU
// address) is flooded, so a loop outside still shows its BPDUs, as an STP-less hub would; 01-0f are
// dropped as `l2_reserved_group` unless the network's group_fwd_mask has the address's bit (as
// Linux's bridge group_fwd_mask, for 802.1X or LLDP passthrough). Bits 0-2 (STP, PAUSE, LACP) can
// never be set (network_set_group_fwd_mask refuses them as Linux does with EINVAL), so PAUSE and LACP
// are never relayed. The GARP/MRP range 01:80:c2:00:00:20-2f is not link-local and is flooded like
// any multicast, as Linux does. Learning has already run: Linux learns from link-local frames too.
import { Reason } from "../reasons";
import * as arena from "../arena";
import { Meta, FLAG_TAGGED, FLAG_FLOODED, FLAG_FLOODING } from "../packet";
import { Port, port, highPort, isMember, MODE_TRUNK, PORT_ACL, PORT_CAPS } from "../ports";
import * as gso from "./gso";
import { aclCheck } from "./acl";
import { DIR_IN } from "../tables/acl";
import { drop, bump, Stat } from "../counters";
import * as mac from "../tables/mac";
import * as tx from "../tx";
import { loadMac, isGroupMac, set16 } from "../wire/bytes";
import * as eth from "../wire/ethernet";
import * as vlan from "../wire/vlan";
import { ROUTER_PORT, ifaceOfDomain, puntAny } from "../router";
import { puntGroup4, puntGroup6 } from "./punt";
import * as overlay from "../overlay";
import * as vxlan from "./vxlan";
import * as trace from "../trace";

export const NO_PORT: u32 = 0xffffffff;

// 01:80:c2:00:00:0X in the packed MAC (wire byte 0 is the low byte): the low five bytes and the high
// nibble of the last.
const LINK_LOCAL_MASK: u64 = 0xf0ffffffffff;
const LINK_LOCAL: u64 = 0x0000c28001;
// Mask bits that can never be set: STP (0, flooded anyway with STP off), PAUSE (1), LACP (2).
export const GROUP_FWD_RESTRICTED: u32 = 0x0007;
// One u16 per network (65536 networks): which of 01:80:c2:00:00:00-0f it forwards. Zeroed at create,
// so every network starts with Linux's default mask 0.
export let groupFwdBase: usize = 0;
export function groupFwdBytes(): u64 { return arena.span(65536, 2); }
export function allocGroupFwd(): void { groupFwdBase = arena.take(65536, 2); }

@inline export function groupFwdMask(network: u32): u32 {
  return <u32>load<u16>(groupFwdBase + (<usize>network << 1));
}
@inline export function setGroupFwdMask(network: u32, mask: u32): void {
  store<u16>(groupFwdBase + (<usize>network << 1), <u16>mask);
}

// Is `dst` a reserved link-local group address this network does not forward?
@inline function reservedBlocked(dst: u64, network: u32): bool {
  if ((dst & LINK_LOCAL_MASK) != LINK_LOCAL) return false;
  let bit = <u32>(dst >> 40) & 0xf;
  return bit != 0 && (groupFwdMask(network) & (<u32>1 << bit)) == 0;
}

// Forwards m in its domain. `exclude` is the port the frame must not go back to (the ingress port
// when bridging; NO_PORT for a frame the router sends). Returns the router interface index + 1 when
// the frame is also for the router (unicast to a gateway MAC: only the router gets it; an ARP or
// IPv6 multicast in a domain with a router interface: flooded and given to the router), else 0.
@inline export function l2forward(m: Meta, now: u32, exclude: u32): u32 {
  let dst = loadMac(m.frame + eth.DST);
  if (isGroupMac(dst)) {
    if (reservedBlocked(dst, m.network)) {
      drop(m.inPort, Reason.L2ReservedGroup);
      return 0;
    }
    // ARP / ND for a remote endpoint's address: answered here (nodes/vxlan.ts).
    if (overlay.remoteCount != 0 && vxlan.proxy(m)) return 0;
  } else {
    let out = mac.lookup(mac.key(dst, m.vlan), m.network, m.dstHash, now);
    if (out >= 0) {
      let o = <u32>out;
      if (o >= overlay.TUNNEL_PORT) {
        if (o == overlay.TUNNEL_PORT) {
          vxlan.toRemote(m, dst);
          return 0;
        }
        trace.note(trace.Step.L2, 2, o - ROUTER_PORT, 0, 0);
        return o - ROUTER_PORT + 1;
      }
      if (o == exclude) {
        drop(m.inPort, Reason.SamePort);
        return 0;
      }
      let pt = port(o);
      if (isMember(pt, o, m.network, m.vlan)) {
        if (trace.traceOn) trace.note(trace.Step.L2, 0, o, 0, 0);
        deliver(m, pt, o, now);
        return 0;
      }
      // The learned port left the domain (reconfigured or down): fall back to flooding.
    }
  }
  // A DHCP or DHCPv6 request to the gateway's server goes to the host instead (nodes/punt.ts).
  if (puntAny) {
    if (isGroupMac(dst) && (m.ethertype == eth.TYPE_IPV4 ? puntGroup4(m) : m.ethertype == eth.TYPE_IPV6 && puntGroup6(m))) return 0;
  }
  let f: i32 = -1;
  if (isGroupMac(dst) && (m.ethertype == eth.TYPE_ARP || m.ethertype == eth.TYPE_IPV6)) f = ifaceOfDomain(m.network, m.vlan);
  flood(m, exclude, now, f >= 0);
  if (f >= 0) {
    trace.note(trace.Step.L2, 2, <u32>f, 0, 0);
    return <u32>f + 1;
  }
  return 0;
}

// The MAC table hash of the frame's destination in its domain, for frames that did not come through
// the first pass (routed and generated frames).
@inline export function dstHash(m: Meta): u32 {
  return mac.hash(mac.key(loadMac(m.frame + eth.DST), m.vlan), m.network);
}

// Every frame is accounted for: one that reaches no port is dropped as no_destination, unless the
// router takes it (`toRouter`), which then accounts for it (answers it, or counts a drop when it
// reached nothing else: FLAG_FLOODED tells it).
function flood(m: Meta, exclude: u32, now: u32, toRouter: bool): void {
  bump(Stat.Flooded);
  trace.note(trace.Step.L2, 1, 0, 0, 0);
  let members: u32 = 0;
  let n = highPort;
  m.flags |= FLAG_FLOODING;
  for (let i: u32 = 0; i < n; i++) {
    if (i == exclude) continue;
    let pt = port(i);
    if (!isMember(pt, i, m.network, m.vlan)) continue;
    members++;
    deliver(m, pt, i, now);
  }
  m.flags &= ~FLAG_FLOODING;
  if (overlay.vniCount != 0) members += vxlan.replicate(m);
  if (members != 0) m.flags |= FLAG_FLOODED;
  else if (!toRouter) drop(m.inPort, Reason.NoDestination);
}

// Sends the frame out of one port in the form that port wants, through the port's ACLs if it has
// any. Returns false if it was dropped.
@inline function deliver(m: Meta, pt: Port, o: u32, now: u32): bool {
  if (pt.flags & PORT_ACL) {
    let r = aclCheck(m, o, DIR_IN, now);
    if (r) {
      drop(m.inPort, r);
      return false;
    }
  }
  let tagged = (m.flags & FLAG_TAGGED) != 0;
  // A trunk port whose native VLAN is not the frame's wants it tagged (nested ifs: see l2forward).
  if (pt.mode == MODE_TRUNK) {
    if (<u32>pt.vlan != m.vlan) {
      if (tagged && (m.tci & 0x0fff) == m.vlan) return send(m, pt, o, m.frame, m.len);
      if (m.retagged == 0 && !buildTagged(m)) return false;
      return send(m, pt, o, m.retagged, tagged ? m.len : m.len + vlan.TAG_LEN);
    }
  }
  if (!tagged) return send(m, pt, o, m.frame, m.len);
  if (m.untagged == 0 && !buildUntagged(m)) return false;
  return send(m, pt, o, m.untagged, m.len - vlan.TAG_LEN);
}

// A plain frame to a plain port is queued as it is; offload state or a port with offloads takes
// the GSO stage (nodes/gso.ts).
@inline function send(m: Meta, pt: Port, o: u32, f: usize, len: u32): bool {
  if ((m.vnet | (<u32>pt.flags & PORT_CAPS)) == 0) return tx.emit(o, f, len, m.inPort);
  return gso.emit(m, o, <u32>pt.flags, f, len);
}

function buildUntagged(m: Meta): bool {
  let n = m.len - vlan.TAG_LEN;
  let p = tx.reserve(n);
  if (p == 0) {
    drop(m.inPort, Reason.TxBufferFull);
    return false;
  }
  memory.copy(p, m.frame, 12);
  memory.copy(p + 12, m.frame + 16, m.len - 16);
  m.untagged = p;
  return true;
}

function buildTagged(m: Meta): bool {
  let tagged = (m.flags & FLAG_TAGGED) != 0;
  let n = tagged ? m.len : m.len + vlan.TAG_LEN;
  let p = tx.reserve(n);
  if (p == 0) {
    drop(m.inPort, Reason.TxBufferFull);
    return false;
  }
  // Keep the priority bits of a tag that came in (a priority tag or a native-VLAN tag).
  let pcpDei: u32 = tagged ? m.tci & 0xf000 : 0;
  memory.copy(p, m.frame, 12);
  set16(p + vlan.TPID, eth.TYPE_VLAN);
  set16(p + vlan.TCI, pcpDei | m.vlan);
  if (tagged) memory.copy(p + 16, m.frame + 16, m.len - 16);
  else memory.copy(p + 16, m.frame + 12, m.len - 12);
  m.retagged = p;
  return true;
}
