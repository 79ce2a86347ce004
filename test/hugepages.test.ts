// The tables' memory advised for huge pages (DataplaneOptions.hugePages; native/tap.c hugePages), as
// the kernel itself accounts for it in /proc/self/smaps: the module's memory is one mapping that
// carries the advice (VmFlags "hg"); creating a switch with room for 1M connections writes almost none
// of its 230 MiB (records are taken in order: tables/flow.ts, frag.ts, addr6.ts), so the advice reaches the pages before
// they are first touched; once the MAC table is used, huge pages back it (where THP is not "never").
// Memory grown later (the overlay's tables, created on first use) is advised as it grows.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { Dataplane, Switch } from '../src/dataplane.js';
import { loadNative } from '../src/transports/native.js';

type Vma = { range: string; size: number; rss: number; anonHuge: number; flags: string[] };

// This process's mappings, sizes in bytes.
function mappings(): Vma[] {
  const kb = (v: string, name: string) => 1024 * Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(v)?.[1] ?? NaN);
  return readFileSync('/proc/self/smaps', 'utf8').split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/).map((v) => ({
    range: v.slice(0, v.indexOf(' ')),
    size: kb(v, 'Size'), rss: kb(v, 'Rss'), anonHuge: kb(v, 'AnonHugePages'),
    flags: (/^VmFlags:(.*)$/m.exec(v)?.[1] ?? '').trim().split(/\s+/),
  }));
}

// The mappings advised for huge pages that are exactly `bytes` long and were not there before.
function advised(bytes: number, before: Set<string>): Vma[] {
  return mappings().filter((m) => m.flags.includes('hg') && m.size === bytes && !before.has(m.range));
}
const hgRanges = () => new Set(mappings().filter((m) => m.flags.includes('hg')).map((m) => m.range));
const thp = () => /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1];

test('the native helper is there to ask for huge pages (node scripts/native.mjs)', () => {
  assert.ok(process.platform === 'linux', 'these tests read Linux /proc/self/smaps');
  assert.type(loadNative()?.hugePages, 'function', 'the native helper is built and has hugePages()');
});

test('a switch with room for 1M connections: its memory advised, and almost none of it written by creating it', () => {
  const before = hgRanges();
  const dp = new Dataplane({ connections: 1 << 20 });
  const bytes = dp.exports.memory.buffer.byteLength;
  assert.ok(bytes > 200 << 20, `the tables take ${bytes} bytes`);
  assert.ok(dp.hugePages, 'dp.hugePages says the advice was taken');
  const [m] = advised(bytes, before);
  assert.ok(m, 'the kernel shows one mapping of the memory\'s size flagged hg (MADV_HUGEPAGE)');
  // The connection records were a free list threaded through every record (128 MiB written), and
  // until later the fragment table's records and hold slots too (13.6 MiB).
  assert.ok(m.rss < 4 << 20, `creating it made ${(m.rss / 2 ** 20).toFixed(1)} MiB of ${bytes >> 20} resident`);
});

test('hugePages: false asks nothing', () => {
  const before = hgRanges();
  const dp = new Dataplane({ connections: 1 << 18, hugePages: false });
  assert.is(dp.hugePages, false);
  assert.is(advised(dp.exports.memory.buffer.byteLength, before).length, 0, 'no new mapping carries the advice');
});

test('memory grown later for the overlay\'s tables is advised too, before they are used', () => {
  const sw = new Switch({ maxPorts: 4, maxRemotes: 1 << 18 });
  sw.addPort();
  const before = sw.dp.exports.memory.buffer.byteLength;
  sw.overlay.setUnderlay({ port: 0, address: '192.0.2.1' });   // the overlay's tables are created on first use
  const after = sw.dp.exports.memory.buffer.byteLength;
  assert.ok(after - before > 24 << 20, `overlay_create grew memory by ${after - before} bytes`);
  const m = mappings().filter((v) => v.flags.includes('hg') && v.size === after);
  assert.is(m.length, 1, 'one mapping of the grown memory\'s size carries the advice');
  assert.ok(m[0].rss < 16 << 20, `and little of it is resident: ${m[0].rss >> 20} MiB`);
});

test('hugePages that is not a boolean is refused, naming the field', () => {
  assert.throws(() => new Switch({ hugePages: 'yes' as unknown as boolean }), (e: Error & { field?: string }) => e.field === 'hugePages' && /true or false/.test(e.message));
});

test('a used MAC table of 1M entries is backed by huge pages where THP is on', () => {
  const before = hgRanges();
  const sw = new Switch({ maxPorts: 4, macEntries: 1 << 20 });
  sw.addPort();
  const hex = (i: number) => [2, 0, (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255].map((b) => b.toString(16).padStart(2, '0')).join(':');
  for (let i = 1; i <= 4096; i++) sw.addStaticMac({ mac: hex(i * 2654435761 >>> 8), port: 0 });
  const [m] = advised(sw.dp.exports.memory.buffer.byteLength, before);
  assert.ok(m, 'the switch\'s memory is advised');
  const mode = thp();
  if (mode === 'never') assert.is(m.anonHuge, 0, 'THP is "never" here: no huge pages, as the kernel was told');
  else assert.ok(m.anonHuge >= 8 << 20, `THP "${mode}": ${m.anonHuge >> 20} MiB of the switch's memory is in huge pages (4096 MACs over a 32 MiB table)`);
});

test.run();
