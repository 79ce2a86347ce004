// Packet trace: every stage's decision for one frame, for allowed, blocked, malformed and load
// balanced frames, and proof that tracing changes nothing (no MAC learned, no connection, no counter).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch } from '../src/index.js';
import { ethernet, ipv4, tcp, udp } from '../src/frames.js';

const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2' };
const GW0 = '02:6e:70:00:00:00', R = '02:00:00:00:00:fe';

function host() {
  const sw = new Switch({ maxPorts: 4, clock: () => 5000 });
  const a = sw.addPort({ network: 1 });
  const up = sw.addPort({ network: 2 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/24' });
  rt.addInterface({ network: 2, address: '192.168.1.1/24', external: true });
  rt.addRoute({ destination: '0.0.0.0/0', interface: 1, nextHop: '192.168.1.254' });
  rt.addSourceNat({ source: '10.0.0.0/24', interface: 1 });
  rt.setNeighbor({ address: '192.168.1.254', mac: R, interface: 1 });
  rt.setNeighbor({ address: A.ip, mac: A.mac, interface: 0 });
  return { sw, a, up, rt };
}
const out = (dport: number) => ethernet({ src: A.mac, dst: GW0, payload: ipv4({ src: A.ip, dst: '93.184.216.34', payload: tcp({ srcPort: 40000, dstPort: dport, flags: 'S' }) }) });

test('an allowed, masqueraded SYN: every stage, the frame that would leave, and no change at all', () => {
  const { sw, a, up, rt } = host();
  const before = JSON.stringify([sw.counters(), sw.macTable(), rt.connections()]);
  const t = sw.trace(a.id, out(443));
  assert.equal(t.steps.map((s) => s.step), ['rx', 'parse', 'ingress', 'learn', 'l2', 'conntrack', 'route', 'snat', 'l2', 'egress']);
  assert.match(t.text, /l2 +flooded in the domain\negress +port 1/, "R has not spoken yet: its MAC is unknown");
  assert.match(t.text, /l2 +to the router, interface 0/);
  assert.match(t.text, /conntrack +miss: a new connection/);
  assert.match(t.text, /route +interface 1, next hop 192\.168\.1\.254/);
  assert.match(t.text, /snat +source 192\.168\.1\.1:40000/);
  assert.is(t.dropped, undefined);
  assert.is(t.output.length, 1);
  assert.is(t.output[0].port, up.id);
  assert.equal(JSON.stringify([sw.counters(), sw.macTable(), rt.connections()]), before, 'tracing changed nothing');
  // The real thing produces the frame the trace showed.
  let real: Uint8Array | undefined;
  sw.onFrame((f) => { real = f.slice(); });
  sw.inject([[a.id, out(443)]]);
  assert.equal(real, t.output[0].frame);
});

test('a frame blocked by an ACL: the rule that decided and the drop', () => {
  const { sw, a } = host();
  sw.acls.setPortAcl(a.id, { rules: [{ Id: 'no-ssh-out', Action: 'Block', Direction: 'Out', Priority: 10, RemotePorts: '22' }] });
  const t = sw.trace(a.id, out(22));
  assert.match(t.text, /acl +out at port 0: rule "no-ssh-out": block/);
  assert.is(t.dropped, 'acl_blocked');
  assert.is(t.output.length, 0);
  const ok = sw.trace(a.id, out(443));
  assert.match(ok.text, /acl +out at port 0: no rule matched: default action: allow/);
  assert.is(sw.acls.hits(a.id)['no-ssh-out'], 0, 'hit counters are not moved by a trace');
});

test('a malformed frame: the parse step names the reason', () => {
  const { sw, a } = host();
  const t = sw.trace(a.id, ethernet({ src: A.mac, dst: GW0, ethertype: 0x0800, payload: new Uint8Array([0x46, 0, 0, 20]) }));
  assert.equal(t.steps.map((s) => s.step), ['rx', 'parse', 'drop']);
  assert.match(t.text, /parse +malformed: ipv4_truncated/);
  assert.is(t.dropped, 'ipv4_truncated');
});

test('a load-balanced connection: the backend chosen', () => {
  const { sw, up, rt } = host();
  rt.addLoadBalancer({ frontendVips: ['192.168.1.80'], portMappings: [{ protocol: 'udp', externalPort: 53 }], backends: [A.ip] });
  const t = sw.trace(up.id, ethernet({ src: R, dst: '02:6e:70:00:00:01', payload: ipv4({ src: '203.0.113.5', dst: '192.168.1.80', payload: udp({ srcPort: 999, dstPort: 53 }) }) }));
  assert.match(t.text, /dnat +destination 10\.0\.0\.2:53 \(chosen by a load balancer\)/);
  assert.is(t.output.length, 1);
  assert.is(rt.connections().length, 0);
});

test.run();
