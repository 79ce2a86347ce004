// The fixed-record hash tables under churn: many entries added, a random half removed (backward-shift
// deletion moves records within probe runs), and every survivor must still be found while every
// removed one is gone. Checked through the ABI for the MAC table, routes, neighbours and port mappings.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch } from '../src/dataplane.js';

function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s; };
}
const mac = (i: number) => `02:00:${(i >> 24) & 255}:${(i >> 16) & 255}:${(i >> 8) & 255}:${i & 255}`.replace(/:(\d+)/g, (_, d) => ':' + Number(d).toString(16).padStart(2, '0'));

test('MAC table: 3000 static entries, 1500 removed at random, the rest intact', () => {
  const sw = new Switch({ maxPorts: 4, macEntries: 4096 });
  sw.addPort(); sw.addPort();
  const r = rng(11);
  const all = Array.from({ length: 3000 }, (_, i) => i + 1);
  for (const i of all) sw.addStaticMac({ mac: mac(i), port: i % 2, vlan: i % 7 });
  const removed = new Set<number>();
  while (removed.size < 1500) removed.add(all[r() % all.length]);
  for (const i of removed) assert.ok(sw.removeMac({ mac: mac(i), vlan: i % 7 }), `remove ${i}`);
  const table = new Map(sw.macTable().map((e) => [`${e.mac}/${e.vlan}`, e.port]));
  assert.is(table.size, 1500);
  for (const i of all) {
    const k = `${mac(i)}/${i % 7}`;
    if (removed.has(i)) assert.not.ok(table.has(k), `${k} was removed`);
    else assert.is(table.get(k), i % 2, `${k} survives`);
  }
  for (const i of removed) assert.not.ok(sw.removeMac({ mac: mac(i), vlan: i % 7 }), 'removing twice finds nothing');
});

test('MAC table at capacity: lines overflow into the next and wrap around, churn keeps every key found once', () => {
  // 64 entries in 128 slots (32 lines of four): at half load about one line in ten is full, so keys
  // overflow into the next lines, and the last line's overflow wraps to the first. Deletion moves them
  // back over lines; a key the search then misses would be added a second time by addStaticMac.
  const sw = new Switch({ maxPorts: 4, macEntries: 64 });
  sw.addPort(); sw.addPort(); sw.addPort();
  const r = rng(29);
  const model = new Map<number, number>();
  let next = 1;
  const add = (i: number, port: number) => { sw.addStaticMac({ mac: mac(i), port, vlan: i % 3 }); model.set(i, port); };
  const check = (what: string) => {
    const listed = sw.macTable();
    const table = new Map(listed.map((e) => [`${e.mac}/${e.vlan}`, e.port]));
    assert.is(listed.length, model.size, `${what}: no key listed twice`);
    for (const [i, port] of model) assert.is(table.get(`${mac(i)}/${i % 3}`), port, `${what}: ${mac(i)} on port ${port}`);
  };
  while (model.size < 64) add(next++, r() % 3);
  assert.throws(() => sw.addStaticMac({ mac: mac(next), port: 0, vlan: next % 3 }), /full/, 'a full table takes no more');
  check('full');
  for (let round = 0; round < 60; round++) {
    const present = [...model.keys()];
    for (let n = 0; n < 24; n++) {
      const i = present.splice(r() % present.length, 1)[0];
      assert.ok(sw.removeMac({ mac: mac(i), vlan: i % 3 }), `round ${round}: remove ${i}`);
      model.delete(i);
    }
    while (model.size < 64) add(next++, r() % 3);
    // Every key again with another port: found in place (an unfound key would be inserted twice).
    for (const [i, port] of [...model]) add(i, (port + 1) % 3);
    check(`round ${round}`);
  }
  const onPort1 = [...model].filter(([, p]) => p === 1).map(([i]) => i);
  assert.is(sw.flushMacs(1), onPort1.length, 'flushing a port removes its entries, moved ones too');
  for (const i of onPort1) model.delete(i);
  check('after the flush');
  for (const i of [...model.keys()]) assert.ok(sw.removeMac({ mac: mac(i), vlan: i % 3 }), `last removal of ${i}`);
  assert.is(sw.macTable().length, 0);
});

test('routes, neighbours and port mappings: add, remove half, the rest still match', () => {
  const sw = new Switch({ maxPorts: 4, routes: 2048, neighbors: 2048, portMappings: 2048 });
  const rt = sw.router;
  rt.addInterface({ network: 1, address: '10.0.0.1/8' });
  const N = 1000;
  const keep = (i: number) => (i * 2654435761 >>> 0) % 2 === 0;
  for (let i = 0; i < N; i++) {
    rt.addRoute({ destination: `172.${16 + (i >> 8)}.${i & 255}.0/24`, interface: 0, nextHop: '10.0.0.9' });
    rt.setNeighbor({ address: `10.1.${i >> 8}.${i & 255}`, mac: mac(i + 1), interface: 0 });
    rt.addPortMapping({ protocol: i % 2 ? 'tcp' : 'udp', externalPort: 10000 + i, internalAddress: `10.0.0.${(i % 200) + 2}`, internalPort: 80 });
  }
  for (let i = 0; i < N; i++) {
    if (keep(i)) continue;
    assert.ok(rt.removeRoute({ destination: `172.${16 + (i >> 8)}.${i & 255}.0/24` }));
    assert.ok(rt.removeNeighbor({ address: `10.1.${i >> 8}.${i & 255}` }));
    assert.ok(rt.removePortMapping({ protocol: i % 2 ? 'tcp' : 'udp', externalPort: 10000 + i }));
  }
  const neigh = new Map(rt.neighbors().map((n) => [n.address, n.mac]));
  for (let i = 0; i < N; i++) {
    assert.is(neigh.get(`10.1.${i >> 8}.${i & 255}`), keep(i) ? mac(i + 1) : undefined);
    // A route or mapping that is gone can be removed no more; one that stays can (and is then gone).
    assert.is(rt.removeRoute({ destination: `172.${16 + (i >> 8)}.${i & 255}.0/24` }), keep(i));
    assert.is(rt.removePortMapping({ protocol: i % 2 ? 'tcp' : 'udp', externalPort: 10000 + i }), keep(i));
  }
});

test.run();
