// Stage: ingress port checks. Puts the frame in its broadcast domain (the port's network and a VLAN,
// by the port's access/trunk rules in ports.ts) and applies the source checks every switch port makes:
// a group (multicast) source MAC is never valid, nor is the all-zero MAC (as the Linux bridge's
// is_valid_ether_addr check in br_handle_frame: no station has it, so learning it would let any port
// claim unicast to 00:00:00:00:00:00), and an endpoint port with the spoof guard on only accepts its
// endpoint's MAC as source. These run before learning, so a refused source is never learned.
import { Reason } from "../reasons";
import { Meta, FLAG_TAGGED } from "../packet";
import { Port, MODE_ACCESS, PORT_SPOOF_GUARD, PORT_DROP_UNTAGGED, vlanAllowed } from "../ports";
import { loadMac, isGroupMac } from "../wire/bytes";
import * as eth from "../wire/ethernet";

@inline export function ingress(m: Meta, pt: Port): Reason {
  let vid: u32 = (m.flags & FLAG_TAGGED) ? m.tci & 0x0fff : 0;
  let native = <u32>pt.vlan;
  m.network = <u32>pt.network;
  if (pt.mode == MODE_ACCESS) {
    if (vid != 0) return Reason.VlanTaggedOnAccess;
    m.vlan = native;
  } else if (vid == 0) {
    if (pt.flags & PORT_DROP_UNTAGGED) return Reason.VlanUntaggedOnTrunk;
    m.vlan = native;
  } else {
    if (vid != native && !vlanAllowed(m.inPort, vid)) return Reason.VlanNotAllowed;
    m.vlan = vid;
  }
  let src = loadMac(m.frame + eth.SRC);
  if (isGroupMac(src)) return Reason.SrcMacMulticast;
  if (src == 0) return Reason.L2ZeroSource;
  if (pt.flags & PORT_SPOOF_GUARD) {
    if (src != pt.guardMac) return Reason.MacSpoof;
  }
  return Reason.None;
}
