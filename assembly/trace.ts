// Packet trace: what every stage decided for one frame (our answer to `ofproto/trace`). While a trace
// runs, the stages append fixed records here; at any other time the check is one predictable branch.
// The host runs a trace on a snapshot of the memory and restores it afterwards (src/trace.ts), so a
// traced frame changes nothing: no MAC learned, no connection created, no counter moved.
//
// Record (16 bytes): u8 step (Step), u8 pad, u16 a, u32 b, u32 c, u32 d. What a, b, c, d mean per
// step is in docs/ABI.md.

import * as arena from "./arena";

export const enum Step {
  Rx = 1,        // a port, b length
  Parse,         // a reason, b EtherType, c protocol
  Ingress,       // a reason, b network, c VLAN
  Learn,         // a result (0 refreshed, 1 learned, 2 moved, 3 table full, 4 limit, 5 static conflict)
  L2,            // a decision (0 unicast, 1 flood, 2 to the router), b port or interface
  Acl,           // a direction (0 out, 1 in), b port, c rule + 1 (0: none matched), d verdict (0 block, 1 allow, 2 connection)
  Conntrack,     // a hit (1) or miss (0), b record, c direction, d state after
  Dnat,          // b new destination, c new port, d 1 if a load balancer chose it
  Route,         // a found (1) or not (0), b interface, c next hop (IPv4), d flags
  Snat,          // b new source, c new port
  Egress,        // a port, b length
  Drop,          // a reason, b port
  Local,         // the router: a 0 took it without answer (b reason; flooded too, so not a drop), 1 answered ARP / ND,
                 // 2 answered echo, 3 sent a TCP RST, 4 sent an ICMP / ICMPv6 error (b type, c code)
  Fragment,      // a later fragment: a 0 follows its first fragment (b sport, c dport), 1 held for it
  Punt,          // handed to the host (nodes/punt.ts): a punt reason, b interface, c 1 if the punt area was full (then a drop follows)
  Count,
}

const CAPACITY: u32 = 256;
export let traceOn = false;
export let base: usize = 0;
export let count: u32 = 0;

export function bytes(): u64 { return arena.span(CAPACITY, 16) + arena.span(1, 16); }
export function alloc(): void {
  base = arena.take(CAPACITY, 16);
  aside = arena.take(1, 16);
}

export function start(): void {
  traceOn = true;
  count = 0;
}

export function stop(): void {
  traceOn = false;
}

// Call sites on the per-packet path test traceOn themselves first, so that computing the arguments
// costs nothing while no trace runs.
@inline export function note(step: Step, a: u32, b: u32, c: u32, d: u32): void {
  if (traceOn) put(step, a, b, c, d);
}

export function record(step: Step, a: u32, b: u32, c: u32, d: u32): void { put(step, a, b, c, d); }

// Moves the last record aside (takeLast) and back at the end (putBack), for a stage that records
// what happened before a drop it counted.
let aside: usize = 0;
export function takeLast(): bool {
  if (count == 0) return false;
  count--;
  memory.copy(aside, base + (<usize>count << 4), 16);
  return true;
}
export function putBack(): void {
  if (count >= CAPACITY) return;
  memory.copy(base + (<usize>count << 4), aside, 16);
  count++;
}

function put(step: Step, a: u32, b: u32, c: u32, d: u32): void {
  if (count >= CAPACITY) return;
  let r = base + (<usize>count << 4);
  store<u8>(r, <u8>step);
  store<u8>(r, 0, 1);
  store<u16>(r, <u16>a, 2);
  store<u32>(r, b, 4);
  store<u32>(r, c, 8);
  store<u32>(r, d, 12);
  count++;
}
