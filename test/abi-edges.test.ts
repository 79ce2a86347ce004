// The edges of create and create_l3 (docs/ABI.md "Creating a switch"): every argument at 0, 1, its
// maximum - 1, its maximum, its maximum + 1 and huge values. Each call either refuses with an error
// code (-3 out of range, -14 the tables do not fit in wasm32 memory) and leaves the instance able to
// create again, or succeeds with a switch that processes a frame. It never traps, and never succeeds
// with tables it could not fit (the case: macEntries 2^27 once "succeeded" with a table whose
// byte size wrapped 32 bits, and the first frame then read out of bounds). The SDK names the argument.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Switch, NetplaneError, loadModule } from '../src/dataplane.js';
import { instantiate, CREATE_LIMITS, type NetplaneExports } from '../src/abi.js';
import { ethernet, ipv4, udp } from '../src/frames.js';

const build = process.env.NETPLANE_BUILD === 'debug' ? 'debug' : 'release';
const mod = loadModule(build);
const BAD_ARGUMENT = -3, TOO_LARGE = -14;

// A broadcast from port 0: with two ports it floods to port 1 (one tx descriptor).
function processesAFrame(x: NetplaneExports, ports: number): void {
  for (let p = 0; p < Math.min(ports, 2); p++) assert.is(x.port_configure(p, 0, 0, 0, 0, 0xffffffff), 0);
  const f = ethernet({ dst: 'ff:ff:ff:ff:ff:ff', src: '02:00:00:00:00:01',
    payload: ipv4({ src: '10.0.0.1', dst: '10.0.0.2', payload: udp({ srcPort: 1, dstPort: 2, payload: new Uint8Array(4) }) }) });
  const u8 = new Uint8Array(x.memory.buffer);
  u8.set(f, x.rx_buffer());
  const dv = new DataView(x.memory.buffer);
  dv.setUint32(x.rx_descriptors(), 0, true);
  dv.setUint16(x.rx_descriptors() + 4, f.length, true);
  dv.setUint16(x.rx_descriptors() + 6, 0, true);
  const n = x.process(1, 1000);
  assert.is(n, ports >= 2 ? 1 : 0, 'the broadcast floods to the other port');
}

// Values to try for an argument whose range is [lo, hi].
const edges = (lo: number, hi: number) => [...new Set([0, lo, lo + 1, hi - 1, hi, hi + 1, 2 ** 31, 2 ** 32 - 1])];

const SMALL = { maxPorts: 2, macEntries: 16, batch: 4, rxBytes: 4096 };
const L3_SMALL = { routes: 16, neighbors: 16, connections: 16, portMappings: 16, ipv6Addresses: 16 };

test('create: every argument at its edges either refuses with -3 or makes a working switch; never traps', () => {
  for (const arg of Object.keys(SMALL) as Array<keyof typeof SMALL>) {
    const [lo, hi] = CREATE_LIMITS[arg];
    for (const v of edges(lo, hi)) {
      const args = { ...SMALL, [arg]: v };
      const x = instantiate(mod);
      const code = x.create(args.maxPorts, args.macEntries, args.batch, args.rxBytes);
      const inRange = v >= lo && v <= hi;
      assert.is(code, inRange ? 0 : BAD_ARGUMENT, `${arg} = ${v}`);
      if (code === 0) processesAFrame(x, args.maxPorts);
      else assert.is(x.create(2, 16, 4, 4096), 0, 'a refused create changed nothing');
    }
  }
});

test("create: the issue's cases (macEntries 2^27 and 2^28, 2^25, rxBytes 2^30) and a sum past 4 GiB", () => {
  for (const m of [2 ** 27, 2 ** 28]) assert.is(instantiate(mod).create(64, m, 256, 65536), BAD_ARGUMENT, `macEntries ${m}`);
  const cases: Array<[[number, number, number, number], number]> = [[[64, 2 ** 25, 256, 65536], 64], [[16, 4096, 256, 2 ** 30], 16]];
  for (const [args, ports] of cases) {
    const x = instantiate(mod);
    assert.is(x.create(...args), 0, `create(${args})`);
    processesAFrame(x, ports);
  }
  // Each at its maximum fits alone; all together (7 GiB) do not, and the call says how much they need.
  const x = instantiate(mod);
  assert.is(x.create(0xefff, 2 ** 26, 65536, 2 ** 30), TOO_LARGE);
  assert.ok(x.create_needed_bytes() > 2 ** 32, `needs ${x.create_needed_bytes()}`);
  assert.is(x.memory.buffer.byteLength < 2 ** 24, true, 'a refused create grew no memory');
  assert.is(x.create(2, 16, 4, 4096), 0, 'and changed nothing');
});

test('create_l3: every argument at its edges either refuses with -3 or makes a working router; never traps', () => {
  const order = ['routes', 'neighbors', 'connections', 'portMappings', 'ipv6Addresses'] as const;
  for (const arg of order) {
    const [lo, hi] = CREATE_LIMITS[arg];
    for (const v of edges(lo, hi)) {
      const args = { ...L3_SMALL, [arg]: v };
      const x = instantiate(mod);
      assert.is(x.create(2, 16, 4, 4096), 0);
      const code = x.create_l3(...order.map((k) => args[k]) as [number, number, number, number, number]);
      const inRange = v >= lo && v <= hi;
      assert.is(code, inRange ? 0 : BAD_ARGUMENT, `${arg} = ${v}`);
      if (code !== 0) {
        assert.is(x.create_l3(16, 16, 16, 16, 16), 0, 'a refused create_l3 changed nothing');
      }
      // With a router interface in the domain the broadcast still floods (and reaches the router).
      assert.is(x.iface_configure(0, 0, 0, 0, 0x0200, 0x000000fe, 0), 0);
      processesAFrame(x, 2);
    }
  }
  const x = instantiate(mod);
  assert.is(x.create(2, 16, 4, 4096), 0);
  assert.is(x.create_l3(2 ** 24, 2 ** 24, 2 ** 24, 2 ** 20, 2 ** 24), TOO_LARGE);
  assert.ok(x.create_needed_bytes() > 2 ** 32);
  assert.is(x.create_l3(16, 16, 16, 16, 16), 0);
});

test('with memory nearly full, a configuration-time allocation refuses (0 / -7) instead of trapping', () => {
  const x = instantiate(mod);
  // 2 GiB of MAC table and 1.8 GiB of rx and tx areas: under 200 MiB of the 4 GiB left.
  assert.is(x.create(16, 2 ** 26, 256, 600 * 2 ** 20), 0);
  assert.is(x.acl_alloc(2 ** 28), 0, 'a 256 MiB rule set does not fit: refused');
  assert.ok(x.acl_alloc(4096) > 0, 'a small one does');
  assert.is(x.create_l3(16, 16, 16, 16, 16), 0);
  processesAFrame(x, 2);
});

test('the SDK names the argument: out of range, and a sum that does not fit', () => {
  const refuse = (opts: ConstructorParameters<typeof Switch>[0], field: string, words: RegExp) => {
    try {
      new Switch({ build, ...opts });
    } catch (e) {
      assert.instance(e, NetplaneError, String(e));
      assert.is((e as NetplaneError).field, field, String(e));
      assert.match((e as Error).message, words);
      return;
    }
    assert.unreachable(`${JSON.stringify(opts)} was accepted`);
  };
  // The SDK's former maximum, which trapped with a raw RuntimeError.
  refuse({ connections: 2 ** 26 }, 'connections', /from 1 to 16777216/);
  refuse({ macEntries: 2 ** 27 }, 'macEntries', /from 1 to 67108864/);
  refuse({ maxPorts: 16, macEntries: 2 ** 26, rxBytes: 2 ** 30, batch: 65536 }, 'macEntries', /need [\d.]+ GiB.*lower macEntries/);
  refuse({ maxPorts: 16, connections: 2 ** 24, routes: 2 ** 23, neighbors: 2 ** 23 }, 'connections', /need [\d.]+ GiB/);
});

test.run();
