// Stage: L2 learning. Records that the frame's source MAC lives behind its ingress port in its
// broadcast domain. Separate from forwarding (as in VPP's l2-learn and l2-fwd) so that each does one
// job and the batch can run all lookups of one kind together.
//
// Port security, as a physical switch's "protect" mode: a frame from a new MAC beyond the port's learn
// limit is dropped (otherwise the limit would only hide hosts, not stop them), and so is a frame whose
// source is a static entry of another port.
import { Reason } from "../reasons";
import { Meta, FLAG_TUNNEL } from "../packet";
import { checkSource } from "./vxlan";
import { Port, PORT_NO_LEARN } from "../ports";
import * as mac from "../tables/mac";
import { loadMac } from "../wire/bytes";
import * as eth from "../wire/ethernet";
import * as trace from "../trace";

@inline export function l2learn(m: Meta, pt: Port, now: u32): Reason {
  // (The underlay port learns nothing: a decapsulated frame's source is checked instead.)
  if (pt.flags & PORT_NO_LEARN) return (m.flags & FLAG_TUNNEL) != 0 ? checkSource(m, now) : Reason.None;
  let k = mac.key(loadMac(m.frame + eth.SRC), m.vlan);
  // Learned on this port and seen lately: nothing to do. Each test in its own if (tables/mac.ts find).
  if (!trace.traceOn) {
    let s = mac.find(k, m.network, m.srcHash);
    if (s != 0) {
      if (mac.recPort(s) == m.inPort) {
        if (mac.seenWithin(s, now)) return Reason.None;
      }
    }
  }
  let r = mac.learn(k, m.network, m.srcHash, m.inPort, now);
  if (trace.traceOn) trace.note(trace.Step.Learn, <u32>r, 0, 0, 0); // Learn's values are the trace's codes
  if (r == mac.Learn.LimitReached) return Reason.LearnLimit;
  if (r == mac.Learn.StaticConflict) return Reason.StaticMacConflict;
  return Reason.None;
}
