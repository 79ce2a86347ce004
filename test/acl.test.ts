// Stateful ACLs with HNS semantics: precedence (priority, Block over Allow at a tie, then order),
// ranges, CIDR edges, protocol any, explicit default actions both ways, replies passing by conntrack,
// policy generations cutting established connections, network-level rules, hit counters, and refusal
// of invalid rule sets without changing anything.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch, type AclRule } from '../src/index.js';
import { ethernet, ipv4, ipv6, tcp, udp, icmp, icmpv6 } from '../src/frames.js';

const A = { mac: '02:00:00:00:00:0a', ip: '10.0.0.2', ip6: 'fd00::2' };
const B = { mac: '02:00:00:00:00:0b', ip: '10.0.0.3', ip6: 'fd00::3' };

function lan() {
  let now = 1000;
  const sw = new Switch({ maxPorts: 8, clock: () => now });
  const a = sw.addPort({ network: 1 });
  const b = sw.addPort({ network: 1 });
  const out: number[] = [];
  sw.onFrame((_f, p) => out.push(p));
  const send = (port: number, f: Uint8Array, dt = 1) => {
    now += dt;
    out.length = 0;
    sw.inject([[port, f]], now);
    return out.slice();
  };
  const seg = (from: typeof A, to: typeof A, sport: number, dport: number, flags: string) =>
    ethernet({ src: from.mac, dst: to.mac, payload: ipv4({ src: from.ip, dst: to.ip, payload: tcp({ srcPort: sport, dstPort: dport, flags }) }) });
  const dgram = (from: typeof A, to: typeof A, sport: number, dport: number) =>
    ethernet({ src: from.mac, dst: to.mac, payload: ipv4({ src: from.ip, dst: to.ip, payload: udp({ srcPort: sport, dstPort: dport }) }) });
  // Both hosts known to the switch.
  send(0, dgram(A, { ...B, mac: 'ff:ff:ff:ff:ff:ff' }, 1, 1));
  send(1, dgram(B, { ...A, mac: 'ff:ff:ff:ff:ff:ff' }, 1, 1));
  return { sw, a, b, send, seg, dgram, tick: (dt: number) => (now += dt) };
}

const allowIn = (extra: Partial<AclRule> = {}): AclRule => ({ Action: 'Allow', Direction: 'In', Priority: 100, ...extra });

test('no ACLs: everything passes; an empty configuration with Allow defaults adds no stage', () => {
  const { sw, send, seg, b } = lan();
  assert.equal(send(0, seg(A, B, 1000, 22, 'S')), [1]);
  sw.acls.setPortAcl(b.id, { rules: [], defaultIn: 'Allow', defaultOut: 'Allow' });
  assert.equal(send(0, seg(A, B, 1001, 22, 'S')), [1]);
  assert.is(sw.counters().drops.acl_blocked, undefined);
});

test('default Block In with an Allow for port 80: the handshake and the data pass, other ports do not', () => {
  const { sw, send, seg, b } = lan();
  sw.acls.setPortAcl(b.id, { rules: [allowIn({ Id: 'web', Protocols: '6', LocalPorts: '80' })], defaultIn: 'Block' });
  assert.equal(send(0, seg(A, B, 40000, 80, 'S')), [1]);
  assert.equal(send(1, seg(B, A, 80, 40000, 'SA')), [0], 'the reply leaves B: same connection');
  assert.equal(send(0, seg(A, B, 40000, 80, 'A')), [1]);
  assert.equal(send(0, seg(A, B, 40001, 22, 'S')), []);
  assert.is(sw.counters().drops.acl_blocked, 1);
  assert.is(sw.acls.hits(b.id).web, 1, 'the rule classified one connection, not every packet');
});

test('precedence: lower priority wins; at a tie Block wins; then the order given', () => {
  const { sw, send, dgram, b } = lan();
  const set = (rules: AclRule[]) => sw.acls.setPortAcl(b.id, { rules, defaultIn: 'Allow' });
  set([{ Action: 'Block', Direction: 'In', Priority: 100 }, { Action: 'Allow', Direction: 'In', Priority: 200 }]);
  assert.equal(send(0, dgram(A, B, 1, 53)), []);
  set([{ Action: 'Block', Direction: 'In', Priority: 200 }, { Action: 'Allow', Direction: 'In', Priority: 100, RemotePorts: '2' }]);
  assert.equal(send(0, dgram(A, B, 2, 53)), [1], 'priority 100 Allow beats priority 200 Block');
  set([{ Action: 'Allow', Direction: 'In', Priority: 100 }, { Action: 'Block', Direction: 'In', Priority: 100 }]);
  assert.equal(send(0, dgram(A, B, 3, 53)), [], 'a tie goes to Block');
  set([{ Id: 'first', Action: 'Block', Direction: 'In', Priority: 100, RemotePorts: '4' }, { Id: 'second', Action: 'Block', Direction: 'In', Priority: 100 }]);
  send(0, dgram(A, B, 4, 53));
  assert.equal(sw.acls.hits(b.id), { first: 1, second: 0 }, 'at a full tie the rule given first decides');
});

test('port ranges and lists, natively: edges in and out', () => {
  const { sw, send, dgram, b } = lan();
  sw.acls.setPortAcl(b.id, { rules: [allowIn({ LocalPorts: '53, 1000-2000' })], defaultIn: 'Block' });
  const at = (p: number) => send(0, dgram(A, B, 5000 + p % 1000, p)).length;
  assert.equal([at(53), at(54), at(999), at(1000), at(1500), at(2000), at(2001)], [1, 0, 0, 1, 1, 1, 0]);
});

test('CIDR edges: /32 exact, /0 everything, and a rule naming IPv4 only never matches IPv6', () => {
  const { sw, send, dgram, b } = lan();
  sw.acls.setPortAcl(b.id, { rules: [allowIn({ RemoteAddresses: '10.0.0.2/32' })], defaultIn: 'Block' });
  assert.equal(send(0, dgram(A, B, 1, 1)), [1]);
  assert.equal(send(0, dgram({ ...A, ip: '10.0.0.4' }, B, 2, 1)), []);
  sw.acls.setPortAcl(b.id, { rules: [allowIn({ RemoteAddresses: '0.0.0.0/0' })], defaultIn: 'Block' });
  assert.equal(send(0, dgram({ ...A, ip: '203.0.113.9' }, B, 3, 1)), [1]);
  const v6 = (src: string) => ethernet({ src: A.mac, dst: B.mac, payload: ipv6({ src, dst: B.ip6, payload: udp({ srcPort: 7, dstPort: 7 }) }) });
  assert.equal(send(0, v6(A.ip6)), [], 'the IPv4 /0 does not cover IPv6');
  sw.acls.setPortAcl(b.id, { rules: [allowIn({ RemoteAddresses: 'fd00::2/128' }), allowIn({ RemoteAddresses: '2001:db8::/32' })], defaultIn: 'Block' });
  assert.equal(send(0, v6('fd00::2')), [1]);
  assert.equal(send(0, v6('fd00::4')), []);
  assert.equal(send(0, v6('2001:db8:ffff::1')), [1]);
  sw.acls.setPortAcl(b.id, { rules: [allowIn({ RemoteAddresses: '::/0' })], defaultIn: 'Block' });
  assert.equal(send(0, v6('fd00::9')), [1]);
  assert.equal(send(0, dgram(A, B, 9, 9)), [], 'and ::/0 does not cover IPv4');
});

test('protocols: a list, 256 as any, absent as any', () => {
  const { sw, send, dgram, seg, b } = lan();
  sw.acls.setPortAcl(b.id, { rules: [allowIn({ Protocols: '17' })], defaultIn: 'Block' });
  assert.equal(send(0, dgram(A, B, 1, 1)), [1]);
  assert.equal(send(0, seg(A, B, 1, 1, 'S')), []);
  sw.acls.setPortAcl(b.id, { rules: [allowIn({ Protocols: 256 })], defaultIn: 'Block' });
  assert.equal(send(0, seg(A, B, 2, 1, 'S')), [1]);
  sw.acls.setPortAcl(b.id, { rules: [allowIn({ Protocols: [1] })], defaultIn: 'Block' });
  const ping = ethernet({ src: A.mac, dst: B.mac, payload: ipv4({ src: A.ip, dst: B.ip, payload: icmp({ type: 8, id: 5 }) }) });
  assert.equal(send(0, ping), [1]);
  assert.equal(send(1, ethernet({ src: B.mac, dst: A.mac, payload: ipv4({ src: B.ip, dst: A.ip, payload: icmp({ type: 0, id: 5 }) }) })), [0], 'the echo reply passes by conntrack');
});

test('default Block Out: the endpoint may not start connections, but may answer those let in', () => {
  const { sw, send, seg, a } = lan();
  sw.acls.setPortAcl(a.id, { rules: [allowIn({ LocalPorts: '22' })], defaultIn: 'Block', defaultOut: 'Block' });
  assert.equal(send(0, seg(A, B, 50000, 443, 'S')), [], 'A may not start');
  assert.equal(send(1, seg(B, A, 60000, 22, 'S')), [0], 'B may reach A:22');
  assert.equal(send(0, seg(A, B, 22, 60000, 'SA')), [1], 'and A answers');
  assert.equal(send(1, seg(B, A, 60001, 23, 'S')), []);
  assert.is(sw.counters().drops.acl_blocked, 2);
});

test('an ICMP error passes a Block In as related to a live connection, not to an expired one', () => {
  const { sw, send, dgram, b } = lan();
  sw.acls.setPortAcl(b.id, { rules: [], defaultIn: 'Block' });
  const sent = dgram(B, A, 5000, 53);
  assert.equal(send(1, sent), [0]);
  const err = ethernet({ src: A.mac, dst: B.mac, payload: ipv4({ src: A.ip, dst: B.ip, payload: icmp({ type: 3, code: 3, payload: sent.subarray(14, 14 + 28) }) }) });
  assert.equal(send(0, err), [1], 'related to B\'s datagram');
  // UDP_UNREPLIED lasts 30 s: after that the same error relates to nothing.
  assert.equal(send(0, err, 31_000), []);
  assert.is(sw.counters().drops.icmp_error_unmatched, 1);
});

test('an ICMPv6 error passes a Block In only as related to a live connection: a spoofed one quoting a flow that never existed is dropped', () => {
  const { sw, send, b } = lan();
  sw.acls.setPortAcl(b.id, { rules: [], defaultIn: 'Block' });
  const d6 = (from: typeof A, to: typeof A, sport: number, dport: number) =>
    ethernet({ src: from.mac, dst: to.mac, payload: ipv6({ src: from.ip6, dst: to.ip6, payload: udp({ srcPort: sport, dstPort: dport }) }) });
  const err = (quote: Uint8Array, type = 1, code = 4) =>
    ethernet({ src: A.mac, dst: B.mac, payload: ipv6({ src: A.ip6, dst: B.ip6, payload: icmpv6({ type, code, payload: quote.subarray(14) }) }) });
  // From outside (A), about a datagram B never sent: every error type, none passes.
  const never = d6(B, A, 5000, 53);
  for (const [type, code] of [[1, 4], [2, 0], [3, 0], [4, 0]]) assert.equal(send(0, err(never, type, code)), [], `type ${type}`);
  assert.is(sw.counters().drops.icmp_error_unmatched, 4);
  // B sends the datagram: now the same error is about B's connection and passes.
  assert.equal(send(1, never), [0]);
  assert.equal(send(0, err(never)), [1], 'related to B\'s datagram');
  // A quote of another flow (another port) still relates to nothing.
  assert.equal(send(0, err(d6(B, A, 5001, 53))), []);
  assert.is(sw.counters().drops.icmp_error_unmatched, 5);
  assert.is(sw.counters().drops.acl_blocked, undefined);
});

test('policy generations: a Block added now cuts an established connection; an Allow removed stops it', () => {
  const { sw, send, seg, b } = lan();
  const allow = allowIn({ Id: 'ssh', LocalPorts: '22' });
  sw.acls.setPortAcl(b.id, { rules: [allow], defaultIn: 'Block' });
  send(0, seg(A, B, 40000, 22, 'S'));
  send(1, seg(B, A, 22, 40000, 'SA'));
  assert.equal(send(0, seg(A, B, 40000, 22, 'A')), [1]);
  const gen = sw.acls.generation();
  sw.acls.setPortAcl(b.id, { rules: [allow, { Action: 'Block', Direction: 'In', Priority: 10, RemoteAddresses: A.ip }], defaultIn: 'Block' });
  assert.ok(sw.acls.generation() > gen);
  assert.equal(send(0, seg(A, B, 40000, 22, 'PA')), [], 'cut mid-connection');
  assert.equal(send(1, seg(B, A, 22, 40000, 'PA')), [], 'in both directions');
  // Start again under an Allow, then remove the Allow.
  sw.acls.setPortAcl(b.id, { rules: [allow], defaultIn: 'Block' });
  send(0, seg(A, B, 40001, 22, 'S'));
  send(1, seg(B, A, 22, 40001, 'SA'));
  assert.equal(send(0, seg(A, B, 40001, 22, 'A')), [1]);
  sw.acls.setPortAcl(b.id, { rules: [], defaultIn: 'Block' });
  assert.equal(send(0, seg(A, B, 40001, 22, 'PA')), []);
});

test('network-level rules apply to every port of the network, also ports added later, before their own', () => {
  const { sw, send, dgram } = lan();
  sw.acls.setNetworkRules(1, [{ Id: 'no-dns', Action: 'Block', Direction: 'In', Priority: 50, LocalPorts: '53', Protocols: '17' }]);
  assert.equal(send(0, dgram(A, B, 1, 53)), []);
  assert.equal(send(1, dgram(B, A, 1, 53)), []);
  const c = sw.addPort({ network: 1 });
  const C = { mac: '02:00:00:00:00:0c', ip: '10.0.0.4', ip6: 'fd00::4' };
  send(c.id, dgram(C, { ...A, mac: 'ff:ff:ff:ff:ff:ff' }, 9, 9));
  assert.equal(send(0, dgram(A, C, 2, 53)), []);
  assert.equal(send(0, dgram(A, C, 2, 54)), [c.id]);
  assert.is(sw.acls.hits()['no-dns'], 3);
});

test('an invalid rule set is refused with the field named, and the ports keep what they had', () => {
  const { sw, send, dgram, b } = lan();
  sw.acls.setPortAcl(b.id, { rules: [allowIn({ LocalPorts: '53' })], defaultIn: 'Block' });
  assert.throws(() => sw.acls.setPortAcl(b.id, { rules: [allowIn({ Priority: -1 })] }), /rules\[0\]\.Priority/);
  assert.throws(() => sw.acls.setPortAcl(b.id, { rules: [allowIn({ LocalPorts: '70000' })] }), /rules\[0\]\.LocalPorts/);
  assert.throws(() => sw.acls.setPortAcl(b.id, { rules: [allowIn({ RemoteAddresses: '10.0.0.0/33' })] }), /rules\[0\]\.RemoteAddresses/);
  assert.throws(() => sw.acls.setPortAcl(b.id, { rules: [{ ...allowIn(), Action: 'Deny' as never }] }), /rules\[0\]\.Action/);
  assert.throws(() => sw.acls.setNetworkRules(1, [allowIn({ Protocols: '300' })]), /rules\[0\]\.Protocols/);
  assert.throws(() => sw.acls.setPortAcl(b.id, { defaultIn: 'Deny' as never }), /defaultIn/);
  assert.equal(send(0, dgram(A, B, 1, 53)), [1]);
  assert.equal(send(0, dgram(A, B, 1, 54)), []);
});

test.run();
