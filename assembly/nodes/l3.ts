// Stage: the router's entry. A frame reaches it addressed to a gateway MAC (routing), or as an ARP or
// IPv6 multicast in a domain with a router interface (neighbour resolution). It goes to the stage for
// its protocol.
import { Reason } from "../reasons";
import { Meta, FLAG_GROUP_DST, FLAG_FLOODED } from "../packet";
import { iface, IF_UP } from "../router";
import { drop } from "../counters";
import * as eth from "../wire/ethernet";
import { arpInput } from "./arp";
import { ip4input } from "./ip4";
import { ip6input } from "./ip6";

// The batch loop's copy (pipeline.ts second(), inlined with ip4input); rarer callers take l3inputCall.
@inline export function l3input(m: Meta, ifIndex: u32, now: u32): void {
  let f = iface(ifIndex);
  let group = (m.flags & FLAG_GROUP_DST) != 0;
  if (m.ethertype == eth.TYPE_ARP) {
    arpInput(m, ifIndex, now);
    return;
  }
  if (m.ethertype == eth.TYPE_IPV6) {
    ip6input(m, ifIndex, now);
    return;
  }
  if (group) {
    // Multicast the router has no use for: its flooded copies account for it, else nothing did.
    if (!(m.flags & FLAG_FLOODED)) drop(m.inPort, Reason.NoDestination);
    return;
  }
  if (f.state != IF_UP) {
    drop(m.inPort, Reason.PortDown);
    return;
  }
  if (m.ethertype == eth.TYPE_IPV4) {
    ip4input(m, ifIndex, now);
    return;
  }
  drop(m.inPort, Reason.L3UnsupportedEthertype);
}

// l3input as one function, for the callers off the batch loop (released fragments), so that they
// do not each carry a copy of the IPv4 stage.
export function l3inputCall(m: Meta, ifIndex: u32, now: u32): void {
  l3input(m, ifIndex, now);
}
