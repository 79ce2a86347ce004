// `npm run bench:cluster`: how fast the overlay's membership converges (issue 15's "Measured"): 100
// simulated hosts x 100 endpoints against one real etcd (started here, as test/cluster.test.ts does),
// each a Cluster (src/cluster, the daemon's code) over a SinkHost (test/cluster-sink.ts: the Host's
// change path, and a setRemoteEndpoints that records what a Host would program), all in this process.
//   (a) one endpoint created on one host: the time until all 99 others have it programmed (its claim
//       transaction, the publish, etcd's watch fan-out to 99 watchers, the coalescing delay, the apply);
//   (b) a new host joining: the time from start() until it has programmed the full view (10 000
//       remote endpoints: its lease, the one-revision read, the watches, the apply);
//   (c) the same with a real Host (src/host.ts, the release dataplane, no underlay socket): the
//       network taken from the cluster, then the 10 000 remotes compiled into the dataplane.
// In (a) and (b) the sink only records the list. `-- --hosts N --endpoints M` changes the size, `--quick`
// runs fewer repetitions. Writes bench/results/cluster.json.
import { Cluster, checkCluster, type RemoteEndpointSpec } from '../src/cluster/index.js';
import { Etcd, etcdMissing } from '../test/etcd.js';
import { SinkHost, overlayNetwork, endpoint } from '../test/cluster-sink.js';
import { writeResults, quick } from './harness.js';
import { Host } from '../src/host.js';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const HOSTS = arg('hosts', 100), ENDPOINTS = arg('endpoints', 100);
const TTL = 10;

const mac = (h: number, e: number) => `02-${[h >> 8, h & 255, e >> 8, e & 255, 1].map((x) => x.toString(16).padStart(2, '0')).join('-')}`.toUpperCase();
const ip = (h: number, e: number) => `10.${h >> 8}.${h & 255}.${e + 10}`;

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const t = Date.now();
  while (!cond()) {
    if (Date.now() - t > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1], runs: s.length };
};
const ms = (x: number) => `${x.toFixed(0)} ms`;

async function main(): Promise<void> {
  const missing = etcdMissing();
  if (missing) throw new Error(missing);
  const etcd = await Etcd.start();
  const config = (host: string) => checkCluster({ etcd: [etcd.url], host, prefix: '/bench', leaseTtl: TTL });
  const members: Array<{ sink: SinkHost; cluster: Cluster }> = [];
  try {
    // The hosts, each with its endpoints already in its state: joining publishes them.
    const t0 = Date.now();
    for (let h = 0; h < HOSTS; h += 10) {
      await Promise.all(Array.from({ length: Math.min(10, HOSTS - h) }, async (_, k) => {
        const n = h + k;
        const sink = new SinkHost();
        sink.state.networks.push(overlayNetwork('ov', 5000, '10.0.0.0/8', '10.255.255.254') as never);
        for (let e = 0; e < ENDPOINTS; e++) sink.state.endpoints.push(endpoint(`h${n}-e${e}`, 'ov', mac(n, e), ip(n, e)) as never);
        const cluster = new Cluster(sink, config(`h${n}`), { providerAddress: `10.99.${n >> 8}.${n & 255}`, log: () => {} });
        await cluster.start();
        members[n] = { sink, cluster };
      }));
    }
    const full = (HOSTS - 1) * ENDPOINTS;
    await until(() => members.every((m) => m.sink.remotes.length === full), 300_000, `every host programming ${full} remotes`);
    const setup = Date.now() - t0;
    console.log(`${HOSTS} hosts x ${ENDPOINTS} endpoints joined and converged (${full} remotes on each) in ${ms(setup)}`);

    // (a) one endpoint created: until all the other hosts have it.
    const created: number[] = [], first: number[] = [];
    for (let run = 0; run < (quick ? 3 : 10); run++) {
      const owner = members[(run * 37) % HOSTS];
      const id = `new-${run}`;
      const others = members.filter((m) => m !== owner);
      const seenAt = new Map<SinkHost, number>();
      for (const m of others) m.sink.onApply = (list: RemoteEndpointSpec[]) => { if (!seenAt.has(m.sink) && list.some((r) => r.ID === id)) seenAt.set(m.sink, performance.now()); };
      const start = performance.now();
      await owner.sink.change({ op: 'create', kind: 'endpoint', value: endpoint(id, 'ov', mac(4000 + run, 1), ip(4000 + run, 1)) });
      await until(() => seenAt.size === others.length, 60_000, `${id} on every host`);
      created.push(Math.max(...seenAt.values()) - start);
      first.push(Math.min(...seenAt.values()) - start);
      for (const m of others) m.sink.onApply = undefined;
    }
    const a = stats(created), a1 = stats(first);
    console.log(`(a) one endpoint created -> programmed on all ${HOSTS - 1} other hosts: median ${ms(a.median)} (min ${ms(a.min)}, max ${ms(a.max)}, ${a.runs} runs); on the first of them: median ${ms(a1.median)}`);

    // (b) a new host: until it has programmed the whole view.
    const joins: number[] = [];
    const view = HOSTS * ENDPOINTS + created.length;
    for (let run = 0; run < (quick ? 2 : 5); run++) {
      const sink = new SinkHost();
      sink.state.networks.push(overlayNetwork('ov', 5000, '10.0.0.0/8', '10.255.255.254') as never);
      let done = 0;
      sink.onApply = (list) => { if (!done && list.length === view) done = performance.now(); };
      const start = performance.now();
      const cluster = new Cluster(sink, config(`joiner-${run}`), { providerAddress: `10.98.0.${run + 1}`, log: () => {} });
      await cluster.start();
      await until(() => done > 0, 120_000, `the new host programming ${view} remotes`);
      joins.push(done - start);
      await cluster.close({ revoke: true });
    }
    const b = stats(joins);
    console.log(`(b) a new host -> its full view of ${view} remote endpoints programmed: median ${ms(b.median)} (min ${ms(b.min)}, max ${ms(b.max)}, ${b.runs} runs)`);

    // (c) a new daemon's Host: the network comes from the cluster, then the remotes are compiled.
    const real: number[] = [];
    for (let run = 0; run < (quick ? 1 : 3); run++) {
      const host = new Host({ config: { overlay: { providerAddress: `10.97.0.${run + 1}` } }, underlay: false, log: () => {} });
      const start = performance.now();
      const cluster = new Cluster(host, config(`daemon-${run}`), { providerAddress: `10.97.0.${run + 1}`, log: () => {} });
      await cluster.start();
      await until(() => cluster.stats().programmed === view, 300_000, `the Host programming ${view} remotes`);
      real.push(performance.now() - start);
      await cluster.close({ revoke: true });
      host.compiler.close();
    }
    const c = stats(real);
    console.log(`(c) a new daemon's Host -> the network and ${view} remote endpoints compiled into its dataplane: median ${ms(c.median)} (min ${ms(c.min)}, max ${ms(c.max)}, ${c.runs} runs)`);
    const file = writeResults('cluster', [
      { name: 'cluster setup', hosts: HOSTS, endpoints: ENDPOINTS, ms: setup },
      { name: 'cluster: one endpoint to all hosts', hosts: HOSTS, endpoints: ENDPOINTS, ms: a, first: a1 },
      { name: 'cluster: a new host\'s full view', hosts: HOSTS, endpoints: ENDPOINTS, remotes: view, ms: b },
      { name: 'cluster: a new Host\'s full view, compiled', hosts: HOSTS, endpoints: ENDPOINTS, remotes: view, ms: c },
    ]);
    console.log(`wrote ${file}`);
  } finally {
    await Promise.all(members.filter(Boolean).map((m) => m.cluster.close({ revoke: true }).catch(() => {})));
    await etcd.stop();
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
