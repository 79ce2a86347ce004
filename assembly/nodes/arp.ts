// Stage: ARP at a router interface (RFC 826). Answers requests for the interface's gateway address
// and for the frontend VIPs of its compartment that lie in its subnet (a load balancer's VIP on the
// uplink's segment: peers there must resolve it to reach it; kube-proxy's IPVS mode binds its VIPs
// to a local device for the same reason),
// learns the senders of requests and replies addressed to it into the compartment's neighbour table
// (and refreshes entries it already has from any ARP it sees), and sends the requests that resolve
// next hops, rate-limited.
import { Meta } from "../packet";
import { Reason } from "../reasons";
import { iface, IF_UP, onLinkV4 } from "../router";
import * as natrules from "../tables/natrules";
import * as neighbor from "../tables/neighbor";
import * as arp from "../wire/arp";
import * as eth from "../wire/ethernet";
import { loadMac, storeMac, set16, set32 } from "../wire/bytes";
import { bump, Stat } from "../counters";
import { arpRequests } from "../ratelimit";
import * as trace from "../trace";
import { newFrame, ethHeader, sendFromRouter, unanswered, GENERATED_PORT } from "./output";

const ARP_FRAME_LEN: u32 = 42;
const BROADCAST: u64 = 0xffff_ffff_ffff;

export function arpInput(m: Meta, ifIndex: u32, now: u32): void {
  let f = iface(ifIndex);
  if (f.state != IF_UP) {
    noReply(m);
    return;
  }
  let a = m.frame + m.l3;
  let op = arp.oper(a);
  let spa = arp.spa(a);
  let tpa = arp.tpa(a);
  let sha = loadMac(a + arp.SHA);
  let zone = <u32>f.zone;
  let forUs = f.ipv4 != 0 && (tpa == f.ipv4 || (onLinkV4(f, tpa) && natrules.isVip(zone, tpa)));
  if (spa != 0 && spa != f.ipv4 && (forUs || neighbor.find(zone, 4, 0, <u64>spa) != 0)) {
    neighbor.update(zone, 4, 0, <u64>spa, sha, ifIndex, neighbor.LEARNED, now);
  }
  if (op != arp.OP_REQUEST || !forUs) {
    noReply(m);
    return;
  }
  let p = newFrame(ARP_FRAME_LEN, m.inPort);
  if (p == 0) return;
  ethHeader(p, loadMac(m.frame + eth.SRC), f, eth.TYPE_ARP);
  writeArp(p + 14, arp.OP_REPLY, f.mac, tpa, sha, spa);
  bump(Stat.ArpReplies);
  trace.note(trace.Step.Local, 1, 0, 0, 0);
  sendFromRouter(p, ARP_FRAME_LEN, f, now);
}

// An ARP frame the router has nothing to answer (a reply or announcement, learned from; a request
// for an address it does not answer) is accounted for by its flooded copies, or, when it reached
// only the router (unicast to the gateway MAC, or a broadcast in a domain with no other port), as
// the drop arp_no_reply.
function noReply(m: Meta): void {
  unanswered(m, Reason.ArpNoReply); // traced as the router's verdict when the copies accounted for it
}

// Broadcasts "who has `target`?" from interface `ifIndex`, within the rate limit.
export function arpRequest(ifIndex: u32, target: u32, now: u32): void {
  let f = iface(ifIndex);
  if (f.ipv4 == 0) return;
  if (!arpRequests.take(now)) {
    bump(Stat.IcmpRateLimited);
    return;
  }
  let p = newFrame(ARP_FRAME_LEN, GENERATED_PORT);
  if (p == 0) return;
  ethHeader(p, BROADCAST, f, eth.TYPE_ARP);
  writeArp(p + 14, arp.OP_REQUEST, f.mac, f.ipv4, 0, target);
  bump(Stat.ArpRequests);
  sendFromRouter(p, ARP_FRAME_LEN, f, now);
}

function writeArp(a: usize, op: u32, sha: u64, spa: u32, tha: u64, tpa: u32): void {
  set16(a + arp.HTYPE, 1);
  set16(a + arp.PTYPE, eth.TYPE_IPV4);
  store<u8>(a + arp.HLEN, 6);
  store<u8>(a + arp.PLEN, 4);
  set16(a + arp.OPER, op);
  storeMac(a + arp.SHA, sha);
  set32(a + arp.SPA, spa);
  storeMac(a + arp.THA, tha);
  set32(a + arp.TPA, tpa);
}
