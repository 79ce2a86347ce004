// The benchmark report: bench/results/report.md with a table per suite, the machine and the date, and
// bench/results/chart.svg, Mpps against table size (log scale) for the L2 MAC table, the NAT
// connection table and the ACL rule count.
import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type { BenchRecord } from './harness.js';

export function machine(): string {
  const c = cpus();
  return `${c[0]?.model ?? 'unknown CPU'}, ${c.length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}/${process.arch}`;
}

interface Series { name: string; colour: string; points: Array<[number, number]> }

function chart(series: Series[]): string {
  const W = 720, H = 400, L = 60, R = 170, T = 30, B = 50;
  const xs = series.flatMap((s) => s.points.map((p) => p[0])), ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const x0 = Math.floor(Math.log10(Math.min(...xs))), x1 = Math.ceil(Math.log10(Math.max(...xs)));
  const y1 = Math.ceil(Math.max(...ys) / 5) * 5 || 5;
  const px = (x: number) => L + ((Math.log10(x) - x0) / (x1 - x0 || 1)) * (W - L - R);
  const py = (y: number) => H - B - (y / y1) * (H - T - B);
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${L}" y="18" font-size="14">Mpps (new connections: M/s) against table size</text>`];
  for (let e = x0; e <= x1; e++) {
    out.push(`<line x1="${px(10 ** e)}" y1="${T}" x2="${px(10 ** e)}" y2="${H - B}" stroke="#ddd"/>`, `<text x="${px(10 ** e)}" y="${H - B + 16}" text-anchor="middle">1e${e}</text>`);
  }
  for (let y = 0; y <= y1; y += y1 / 5) {
    out.push(`<line x1="${L}" y1="${py(y)}" x2="${W - R}" y2="${py(y)}" stroke="#eee"/>`, `<text x="${L - 6}" y="${py(y) + 4}" text-anchor="end">${y}</text>`);
  }
  out.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">entries (MACs, connections, rules)</text>`);
  series.forEach((s, i) => {
    if (!s.points.length) return;
    out.push(`<polyline fill="none" stroke="${s.colour}" stroke-width="2" points="${s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`);
    for (const [x, y] of s.points) out.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${s.colour}"/>`);
    out.push(`<rect x="${W - R + 12}" y="${T + i * 20}" width="12" height="12" fill="${s.colour}"/>`, `<text x="${W - R + 30}" y="${T + i * 20 + 10}">${s.name}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

export function writeReport(dir: string, results: Record<string, BenchRecord[]>, quick: boolean): string {
  const pick = (suite: string, prefix: string) => (results[suite] ?? []).filter((r) => r.name.startsWith(prefix)).map((r) => [r.entries, r.mpps] as [number, number]).sort((a, b) => a[0] - b[0]);
  writeFileSync(join(dir, 'chart.svg'), chart([
    { name: 'L2 learn+forward', colour: '#1f77b4', points: pick('l2', 'l2-forward') },
    { name: 'NAT established', colour: '#d62728', points: pick('l3', 'nat-established') },
    { name: 'ACL new conns (M/s)', colour: '#2ca02c', points: pick('policy', 'acl-new-connections') },
  ]));
  const lines = [`# netplane benchmark report`, '', `${new Date().toISOString()}${quick ? ' (quick run)' : ''}`, '', `Machine: ${machine()}`, '',
    'Every case copies fresh 64-byte frames into the module for each batch of 256 and makes one call per batch; see docs/performance.md for what each measures.', '',
    '![Mpps against table size](chart.svg)', ''];
  for (const [suite, records] of Object.entries(results)) {
    lines.push(`## ${suite}`, '', '| case | entries | Mpps | other |', '|---|---|---|---|');
    for (const r of records) {
      const other = Object.entries(r).filter(([k]) => !['name', 'mpps', 'entries'].includes(k)).map(([k, v]) => `${k}: ${v}`).join(', ');
      lines.push(`| ${r.name} | ${r.entries} | ${r.mpps} | ${other} |`);
    }
    lines.push('');
  }
  const file = join(dir, 'report.md');
  writeFileSync(file, lines.join('\n'));
  return file;
}
