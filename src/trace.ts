// Packet trace, our `ofproto/trace`: runs one frame through the real pipeline with every stage noting
// its decision (assembly/trace.ts), on a snapshot of the dataplane's memory that is restored
// afterwards, so tracing a frame learns nothing, creates no connection and moves no counter. The
// result lists the steps in order, each with a line of text, and the frames that would leave.
import { PUNT_REASONS, type DataplaneView } from './abi.js';
import type { Acls } from './acl.js';

// What a trace needs of a switch (src/switch.ts's Switch, which calls it).
export interface Traceable {
  readonly dp: DataplaneView;
  readonly acls: Pick<Acls, 'ruleIds'>;
  readonly pendingFrames: number;
  flush(now?: number): number;
}
import { ipv4String } from './router.js';

export interface TraceStep {
  step: string;
  text: string;
  a: number; b: number; c: number; d: number;
}

export interface TraceResult {
  steps: TraceStep[];
  output: Array<{ port: number; frame: Uint8Array }>;
  dropped?: string;   // the reason, if the frame (or a copy of it) was dropped
  punted?: string;    // the punt reason ('dhcp', 'dns', 'uplink', 'host', 'rs', 'dhcp6'), if the frame was handed to the host
  text: string;
}

const STEPS = ['', 'rx', 'parse', 'ingress', 'learn', 'l2', 'acl', 'conntrack', 'dnat', 'route', 'snat', 'egress', 'drop', 'local', 'fragment', 'punt'];
const LEARN = ['refreshed', 'learned', 'moved', 'not learned: table full', 'learn limit reached', 'static entry of another port'];
const LOCAL: Array<(s: { b: number; c: number }, reasons: readonly string[]) => string> = [
  (s, reasons) => `taken by the router without answer: ${reasons[s.b]} (flooded too, so not a drop)`,
  () => 'answered by the router (ARP / neighbour discovery)',
  () => 'answered by the router (echo reply)',
  () => 'answered by the router (TCP RST: nothing handles the port)',
  (s) => `answered by the router (ICMP error type ${s.b} code ${s.c})`,
];
const ETHERTYPES: Record<number, string> = { 0x0800: 'IPv4', 0x86dd: 'IPv6', 0x0806: 'ARP' };

export function traceFrame(sw: Traceable, port: number, frame: Uint8Array, now: number): TraceResult {
  const dp = sw.dp;
  if (sw.pendingFrames) sw.flush(now);
  dp.views();
  if (frame.length > dp.rxBuffer.length) throw new Error(`frame: ${frame.length} bytes does not fit the rx buffer`);
  const snapshot = new Uint8Array(dp.exports.memory.buffer).slice();
  try {
    dp.rxBuffer.set(frame, 0);
    const n = dp.exports.trace_frame(port, frame.length, now);
    dp.views();
    const base = dp.exports.trace_buffer();
    const steps: TraceStep[] = [];
    for (let i = 0; i < n; i++) {
      const r = base + i * 16;
      const s = { step: STEPS[dp.u8[r]] ?? `step ${dp.u8[r]}`, a: dp.dv.getUint16(r + 2, true), b: dp.dv.getUint32(r + 4, true), c: dp.dv.getUint32(r + 8, true), d: dp.dv.getUint32(r + 12, true) };
      steps.push({ ...s, text: describe(sw, s) });
    }
    const output: TraceResult['output'] = [];
    const td = dp.txDescriptors;
    for (let i = 0; i < dp.exports.tx_count(); i++) {
      const addr = td.getUint32(i * 8, true), len = td.getUint16(i * 8 + 4, true);
      output.push({ port: td.getUint16(i * 8 + 6, true), frame: dp.u8.slice(addr, addr + len) });
    }
    const drop = steps.find((s) => s.step === 'drop');
    const text = steps.map((s) => `${s.step.padEnd(10)} ${s.text}`).join('\n');
    const punt = steps.find((s) => s.step === 'punt' && s.c === 0);
    return { steps, output, dropped: drop ? dp.reasons[drop.a] : undefined, ...(punt ? { punted: PUNT_REASONS[punt.a] ?? String(punt.a) } : {}), text };
  } finally {
    const mem = new Uint8Array(dp.exports.memory.buffer);
    mem.set(snapshot.subarray(0, Math.min(snapshot.length, mem.length)));
    dp.views();
  }
}

function describe(sw: Traceable, s: { step: string; a: number; b: number; c: number; d: number }): string {
  const reasons = sw.dp.reasons;
  switch (s.step) {
    case 'rx': return `port ${s.a}, ${s.b} bytes`;
    case 'parse': return s.a ? `malformed: ${reasons[s.a]}` : `${ETHERTYPES[s.b] ?? `EtherType 0x${s.b.toString(16)}`}${s.c ? `, protocol ${s.c}` : ''}`;
    case 'ingress': return s.a ? `refused: ${reasons[s.a]}` : `network ${s.b}, VLAN ${s.c}`;
    case 'learn': return `source MAC ${LEARN[s.a] ?? s.a}`;
    case 'l2': return s.a === 0 ? `known unicast to port ${s.b}` : s.a === 1 ? 'flooded in the domain' : s.a === 3
      ? `to a remote endpoint: VXLAN to ${[s.b >>> 24, (s.b >>> 16) & 255, (s.b >>> 8) & 255, s.b & 255].join('.')}, VNI ${s.c}` : `to the router, interface ${s.b}`;
    case 'acl': {
      const where = `${s.a ? 'in' : 'out'} at port ${s.b}`;
      if (s.d === 2) return `${where}: established connection, no rule consulted`;
      const ids = sw.acls.ruleIds(s.b, s.a);
      const who = s.c ? `rule ${JSON.stringify(ids[s.c - 1] ?? String(s.c - 1))}` : 'no rule matched: default action';
      return `${where}: ${who}: ${s.d ? 'allow' : 'block'}`;
    }
    case 'conntrack': return s.a ? `hit: connection ${s.b}, ${s.c ? 'reply' : 'original'} direction, ${s.a === 2 ? 'TCP segment outside the window, ignored (passes, moves nothing): still' : 'now'} ${sw.dp.ctStates[s.d] ?? s.d}` : 'miss: a new connection';
    case 'dnat': return `destination ${ipv4String(s.b)}:${s.c}${s.d ? ' (chosen by a load balancer)' : ''}`;
    case 'route': return s.a ? `interface ${s.b}${s.c ? `, next hop ${ipv4String(s.c)}` : ''}${s.d & 1 ? ' (blackhole)' : ''}` : 'no route';
    case 'snat': return `source ${ipv4String(s.b)}:${s.c}`;
    case 'egress': return `port ${s.a}, ${s.b} bytes`;
    case 'drop': return `${reasons[s.a]}${s.b < 0xffff ? ` (counted on port ${s.b})` : ''}`;
    case 'fragment': return s.a ? 'held until its first fragment comes' : `follows its first fragment: ports ${s.b} -> ${s.c}`;
    case 'punt': return `${s.c ? 'to punt, but the punt area is full' : 'punted to the host'} (${PUNT_REASONS[s.a] ?? s.a}), interface ${s.b}`;
    case 'local': return LOCAL[s.a]?.(s, reasons) ?? `router: ${s.a}`;
  }
  return '';
}
