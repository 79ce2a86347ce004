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
import { Port, port, highPort, isMember, MODE_TRUNK } from "../ports";
import { drop, bump, Stat } from "../counters";
import * as mac from "../tables/mac";
import * as tx from "../tx";
import { loadMac, isGroupMac, set16 } from "../wire/bytes";
import * as eth from "../wire/ethernet";
import * as vlan from "../wire/vlan";

@inline export function l2forward(m: Meta, now: u32): void {
  let dst = loadMac(m.frame + eth.DST);
  if (!isGroupMac(dst)) {
    let out = mac.lookup(mac.key(dst, m.vlan), m.network, m.dstHash, now);
    if (out >= 0) {
      let o = <u32>out;
      if (o == m.inPort) {
        drop(m.inPort, Reason.SamePort);
        return;
      }
      let pt = port(o);
      if (isMember(pt, o, m.network, m.vlan)) {
        deliver(m, pt, o);
        return;
      }
      // The learned port left the domain (reconfigured or down): fall back to flooding.
    }
  }
  flood(m);
}

function flood(m: Meta): void {
  bump(Stat.Flooded);
  let members: u32 = 0;
  let n = highPort;
  for (let i: u32 = 0; i < n; i++) {
    if (i == m.inPort) continue;
    let pt = port(i);
    if (!isMember(pt, i, m.network, m.vlan)) continue;
    members++;
    deliver(m, pt, i);
  }
  if (members == 0) drop(m.inPort, Reason.NoDestination);
}

// Sends the frame out of one port in the form that port wants. Returns false if it was dropped.
@inline function deliver(m: Meta, pt: Port, o: u32): bool {
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
