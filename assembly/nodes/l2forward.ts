// Stage: L2 forwarding. A known unicast destination goes to its port; broadcast, multicast and
// unknown unicast are flooded to every member port of the broadcast domain except the ingress port.
// A frame never leaves by its ingress port and never crosses into another domain.
//
// The egress side of the VLAN rules: a frame leaves untagged on access ports and on a trunk's native
// VLAN, tagged with its domain's VID elsewhere. The frame is rewritten at most twice per packet (one
// untagged and one tagged variant, built on first use into tx memory); a port that wants the frame as
// it arrived gets the rx bytes themselves.
import { Reason } from "../reasons";
import { Meta, FLAG_TAGGED } from "../packet";
import { Port, port, highPort, isMember, MODE_TRUNK, PORT_ACL } from "../ports";
import { aclCheck } from "./acl";
import { DIR_IN } from "../tables/acl";
import { drop, bump, Stat } from "../counters";
import * as mac from "../tables/mac";
import * as tx from "../tx";
import { loadMac, isGroupMac, set16 } from "../wire/bytes";
import * as eth from "../wire/ethernet";
import * as vlan from "../wire/vlan";
import { ROUTER_PORT, ifaceOfDomain } from "../router";
import * as trace from "../trace";

export const NO_PORT: u32 = 0xffffffff;

// Forwards m in its domain. `exclude` is the port the frame must not go back to (the ingress port
// when bridging; NO_PORT for a frame the router sends). Returns the router interface index + 1 when
// the frame is also for the router (unicast to a gateway MAC: only the router gets it; an ARP or
// IPv6 multicast in a domain with a router interface: flooded and given to the router), else 0.
@inline export function l2forward(m: Meta, now: u32, exclude: u32): u32 {
  let dst = loadMac(m.frame + eth.DST);
  if (!isGroupMac(dst)) {
    let out = mac.lookup(mac.key(dst, m.vlan), m.network, m.dstHash, now);
    if (out >= 0) {
      let o = <u32>out;
      if (o >= ROUTER_PORT) {
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
  flood(m, exclude, now);
  if (isGroupMac(dst) && (m.ethertype == eth.TYPE_ARP || m.ethertype == eth.TYPE_IPV6)) {
    let f = ifaceOfDomain(m.network, m.vlan);
    if (f >= 0) {
      trace.note(trace.Step.L2, 2, <u32>f, 0, 0);
      return <u32>f + 1;
    }
  }
  return 0;
}

// The MAC table hash of the frame's destination in its domain, for frames that did not come through
// the first pass (routed and generated frames).
@inline export function dstHash(m: Meta): u32 {
  return mac.hash(mac.key(loadMac(m.frame + eth.DST), m.vlan), m.network);
}

function flood(m: Meta, exclude: u32, now: u32): void {
  bump(Stat.Flooded);
  trace.note(trace.Step.L2, 1, 0, 0, 0);
  let members: u32 = 0;
  let n = highPort;
  for (let i: u32 = 0; i < n; i++) {
    if (i == exclude) continue;
    let pt = port(i);
    if (!isMember(pt, i, m.network, m.vlan)) continue;
    members++;
    deliver(m, pt, i, now);
  }
  if (members == 0 && ifaceOfDomain(m.network, m.vlan) < 0) drop(m.inPort, Reason.NoDestination);
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
  let wantTag = pt.mode == MODE_TRUNK && <u32>pt.vlan != m.vlan;
  let tagged = (m.flags & FLAG_TAGGED) != 0;
  if (wantTag) {
    if (tagged && (m.tci & 0x0fff) == m.vlan) return tx.emit(o, m.frame, m.len, m.inPort);
    if (m.retagged == 0 && !buildTagged(m)) return false;
    return tx.emit(o, m.retagged, tagged ? m.len : m.len + vlan.TAG_LEN, m.inPort);
  }
  if (!tagged) return tx.emit(o, m.frame, m.len, m.inPort);
  if (m.untagged == 0 && !buildUntagged(m)) return false;
  return tx.emit(o, m.untagged, m.len - vlan.TAG_LEN, m.inPort);
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
