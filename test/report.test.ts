// The benchmark report (bench/report.ts) made from a fixture of results: one chart panel per quantity,
// readable ticks, memory never shown as a packet rate, a warning for every figure whose spread is
// above 20 % (and a summary line), and the machine and the date on the image itself.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderChart, renderMarkdown, writeReport, countLabel, type RunInfo } from '../bench/report.js';
import type { BenchRecord, Spread } from '../bench/harness.js';

const run: RunInfo = {
  machine: { cpu: 'Test CPU 9000', cores: 2, memoryGiB: 8, node: 'v20.0.0', platform: 'linux/x64' },
  date: new Date('2025-01-02T03:04:05Z'), quick: false, seconds: 131.4,
};
const mean = (rme: number, v: number, samples = 20): Spread => ({ rme, min: v * 0.9, max: v * 1.1, samples, of: 'mean' });
const best = (rme: number, v: number): Spread => ({ rme, min: v * 0.8, max: v, samples: 4, of: 'best' });
const rec = (name: string, unit: BenchRecord['unit'], value: number, entries: number, entriesOf: string, spread?: Spread): BenchRecord =>
  ({ name, unit, value, entries, entriesOf, ...(spread ? { spread } : {}) });

function fixture(noisyRme = 57): Record<string, BenchRecord[]> {
  return {
    l2: [rec('l2-forward-1k', 'Mpps', 20.1, 1024, 'MACs', mean(3, 20.1)), rec('l2-forward-64k', 'Mpps', 12.3, 65536, 'MACs', mean(4, 12.3)),
      rec('l2-forward-1M', 'Mpps', 8.1, 1 << 20, 'MACs', mean(5, 8.1))],
    l3: [rec('nat-established-10k', 'Mpps', 9.5, 10_000, 'connections', mean(noisyRme, 9.5)),
      rec('nat-established-100k', 'Mpps', 3.6, 100_000, 'connections', mean(2, 3.6)),
      rec('nat-established-1M', 'Mpps', 3.4, 1 << 20, 'connections', mean(2, 3.4)),
      rec('nat-new-connections', 'Mconn/s', 2.5, 1 << 19, 'SYNs per round', best(6, 2.5)),
      rec('nat-bytes-per-connection', 'bytes/conn', 128, 1 << 20, 'connections')],
    policy: [rec('acl-new-connections-10', 'Mconn/s', 2.1, 10, 'rules', best(3, 2.1)), rec('acl-new-connections-100', 'Mconn/s', 2.0, 100, 'rules', best(3, 2.0)),
      rec('acl-new-connections-1000', 'Mconn/s', 1.9, 1000, 'rules', best(3, 1.9)),
      rec('established-no-acl', 'Mpps', 15, 0, 'rules', mean(4, 15)), rec('acl-established-10-rules', 'Mpps', 6.4, 10, 'rules', mean(4, 6.4)),
      rec('acl-established-1000-rules', 'Mpps', 6.3, 1000, 'rules', mean(4, 6.3)), rec('lb-new-connections', 'Mconn/s', 2.4, 16, 'backends', best(4, 2.4))],
    io: [rec('udp-transport-64', 'Mpps', 0.052, 1, 'transport pair')],
  };
}

const panels = (svg: string) => [...svg.matchAll(/<g class="panel" data-unit="([^"]+)">([\s\S]*?)<\/g>/g)].map((m) => ({ unit: m[1], body: m[2] }));
const texts = (svg: string) => [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);
const section = (md: string, title: string) => md.split(/^## /m).find((s) => s.startsWith(title)) ?? '';

test('count labels read 1k, 10k, 100k, 1M (and 64k, 1M for powers of two)', () => {
  assert.equal([100, 1000, 10_000, 100_000, 1_000_000, 1024, 65536, 1 << 20].map(countLabel), ['100', '1k', '10k', '100k', '1M', '1k', '64k', '1M']);
});

test('chart: one panel per quantity, each with one labelled y axis; Mpps and M connections/s never share one', () => {
  const svg = renderChart(fixture(), run);
  const ps = panels(svg);
  assert.ok(ps.filter((p) => p.unit === 'Mpps').length >= 3, 'packet-rate panels');
  assert.ok(ps.filter((p) => p.unit === 'Mconn/s').length >= 2, 'connection-rate panels');
  assert.not.ok(ps.some((p) => p.unit === 'bytes/conn'), 'no panel plots memory');
  for (const p of ps) {
    const hasMpps = p.body.includes('Mpps (million packets/s)'), hasConn = p.body.includes('M connections/s');
    assert.ok(p.unit === 'Mpps' ? hasMpps && !hasConn : hasConn && !hasMpps, `panel of ${p.unit} labels its axis with its own unit only`);
  }
  // Each table-size axis names its own unit.
  assert.ok(svg.includes('MAC table size (MACs)') && svg.includes('tracked connections') && svg.includes('ACL rules on the port'));
  assert.not.ok(svg.includes('NaN'), 'no NaN coordinates');
  assert.is((svg.match(/<g[ >]/g) ?? []).length, (svg.match(/<\/g>/g) ?? []).length, 'balanced groups');
});

test('chart: ticks read 1k / 10k / 100k / 1M, never 1e4', () => {
  const t = texts(renderChart(fixture(), run));
  for (const label of ['1k', '10k', '100k', '1M', '10', '100']) assert.ok(t.includes(label), `tick ${label}`);
  assert.not.ok(t.some((s) => /\d(e|E)[+-]?\d/.test(s)), 'no exponent notation');
});

test('chart: the machine and the date of the run are on the image', () => {
  const svg = renderChart(fixture(), run);
  assert.ok(svg.includes('Test CPU 9000, 2 cores'), 'CPU model and cores');
  assert.ok(svg.includes('Node v20.0.0'), 'Node version');
  assert.ok(svg.includes('2025-01-02 03:04 UTC'), 'date');
  assert.ok(svg.includes('full run in 131 s'), 'duration');
});

test('chart: error bars from the measured spread, and a noisy figure marked', () => {
  const svg = renderChart(fixture(), run);
  assert.ok((svg.match(/<path d="M[^"]*"/g) ?? []).length >= 10, 'error bars drawn');
  assert.ok(svg.includes('±57 %'), 'the noisy figure carries its spread');
  assert.ok(svg.includes('1 figure with a spread'), 'summary on the image');
  assert.not.ok(renderChart(fixture(5), run).includes('⚠ 1 figure'), 'no summary when none is noisy');
});

test('report.md: the memory figure is in its own table in bytes per connection, never a Mpps row', () => {
  const md = renderMarkdown(fixture(), run);
  const rows = md.split('\n').filter((l) => l.includes('nat-bytes-per-connection'));
  assert.is(rows.length, 1);
  assert.ok(section(md, 'Memory').includes('| nat-bytes-per-connection | 1 048 576 connections | 128 |'));
  assert.not.ok(section(md, 'Packet rates').includes('nat-bytes'), 'not among the packet rates');
  assert.not.ok(section(md, 'New connections').includes('nat-bytes'), 'not among the connection rates');
  assert.ok(section(md, 'Memory').includes('bytes per connection'));
  assert.not.ok(/\|\s*0\s*\|/.test(md), 'no zero figure');
});

test('report.md: a spread above 20 % is warned on its row and summed up at the top', () => {
  const md = renderMarkdown(fixture(), run);
  const row = md.split('\n').find((l) => l.startsWith('| nat-established-10k '))!;
  assert.match(row, /⚠.*±57 % > 20 %/);
  const head = md.split(/^## /m)[0];
  assert.match(head, /Warning: 1 of 14 timed figures has a spread above ±20 %/);
  assert.ok(head.includes('nat-established-10k ±57 %'));
  assert.ok(head.includes('2025-01-02 03:04 UTC') && head.includes('Test CPU 9000'));
  const quiet = renderMarkdown(fixture(19.9), run);
  assert.not.ok(quiet.includes('⚠'), 'no warning at 19.9 %');
  assert.ok(quiet.includes('within ±20 %'));
});

test('writeReport writes report.md and chart.svg', () => {
  const dir = mkdtempSync(join(tmpdir(), 'netplane-report-'));
  try {
    writeReport(dir, fixture(), run);
    assert.ok(readFileSync(join(dir, 'report.md'), 'utf8').startsWith('# netplane benchmark report'));
    assert.ok(readFileSync(join(dir, 'chart.svg'), 'utf8').startsWith('<svg'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
