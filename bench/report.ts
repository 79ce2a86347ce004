// The benchmark report: bench/results/report.md and bench/results/chart.svg, made from the records of
// one run (bench/results/<suite>.json) and the run's machine, date and duration.
//
// Why it is built this way:
// - One chart panel per quantity and per x axis: packet rates (Mpps) and connection rates (M
//   connections/s) are never drawn on one y axis, and MACs, connections and rules never share an x
//   axis. A record says its unit itself (harness.ts), so a memory figure cannot be plotted or tabled
//   as a packet rate.
// - Every timed figure carries the spread its run measured; the chart draws it as an error bar (the
//   95 % margin of error) and both the chart and report.md flag any figure whose margin is above
//   NOISY (20 %), with a summary line at the top of report.md. A shared VM makes such runs common, and
//   a figure quoted from one should be seen to be doubtful.
// - The machine (CPU model, cores, Node) and the date are written on the image, so a chart copied
//   elsewhere still says where and when it was measured.
// - Hand-written SVG: no plotting dependency, and the output is plain text that diffs.
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { NOISY, type BenchRecord, type Unit } from './harness.js';

export interface Machine { cpu: string; cores: number; memoryGiB: number; node: string; platform: string }

export interface RunInfo {
  machine: Machine;
  date: Date;
  quick: boolean;
  seconds?: number;       // the whole run's duration
  load?: [number, number];  // the 1-minute load average when the run began and when it ended
}

// The CPU model as /proc/cpuinfo names it (os.cpus() elsewhere), the logical cores, memory and Node.
export function machine(): Machine {
  let cpu = cpus()[0]?.model?.trim() || 'unknown CPU';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1].trim();
  } catch { /* not Linux */ }
  return { cpu, cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, platform: `${process.platform}/${process.arch}` };
}

export const describeMachine = (m: Machine) => `${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, ${m.platform}`;
const describeDate = (d: Date) => `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
const describeRun = (r: RunInfo) => `${describeDate(r.date)}, ${r.quick ? 'quick run' : 'full run'}${r.seconds !== undefined ? ` in ${Math.round(r.seconds)} s` : ''}` +
  (r.load ? `, load average ${r.load[0].toFixed(2)} at the start, ${r.load[1].toFixed(2)} at the end (the run itself adds 1)` : '');

const UNIT_AXIS: Record<Unit, string> = { 'Mpps': 'Mpps (million packets/s)', 'Mconn/s': 'M connections/s', 'bytes/conn': 'bytes per connection' };

// Tick and table labels for counts: 1k, 10k, 100k, 1M (a power of two shows as 64k, 1M).
export function countLabel(n: number): string {
  const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 1 : 0));
  if (n >= 1 << 20 && n % (1 << 20) === 0) return `${n / (1 << 20)}M`;
  if (n >= 1e6) return `${fmt(n / 1e6)}M`;
  if (n >= 1024 && n % 1024 === 0 && n % 1000 !== 0) return `${n / 1024}k`;
  if (n >= 1e3) return `${fmt(n / 1e3)}k`;
  return String(n);
}

const grouped = (n: number) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
const fixed = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toPrecision(2));
const noisy = (r: BenchRecord) => (r.spread?.rme ?? 0) > NOISY;
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

// ---------------------------------------------------------------------------------------------------
// The chart

interface Panel {
  title: string;
  unit: Unit;
  // A log-scale x axis over a table size (`x` names what is counted), or named bars.
  x: string;
  pick: (r: BenchRecord) => boolean;
  bars?: Record<string, string>;            // record name -> bar label
  reference?: { name: string; label: string };   // a dashed horizontal line (a case without the x axis)
}

const PANELS: Panel[] = [
  { title: 'L2 learn + forward', unit: 'Mpps', x: 'MAC table size (MACs)', pick: (r) => r.name.startsWith('l2-forward-') },
  { title: 'NAT, established TCP', unit: 'Mpps', x: 'tracked connections', pick: (r) => r.name.startsWith('nat-established-') },
  { title: '4096 established flows through ACLs', unit: 'Mpps', x: 'ACL rules on the port', pick: (r) => /^acl-established-\d+-rules$/.test(r.name), reference: { name: 'established-no-acl', label: 'no ACLs' } },
  { title: 'New connections through ACLs', unit: 'Mconn/s', x: 'ACL rules on the port', pick: (r) => r.name.startsWith('acl-new-connections-') },
  { title: 'New connections', unit: 'Mconn/s', x: '', pick: (r) => r.name === 'nat-new-connections' || r.name === 'lb-new-connections', bars: { 'nat-new-connections': 'NAT (SYN through SNAT)', 'lb-new-connections': 'load balancer, 16 backends' } },
];

const COLOUR = '#1f5fa8', NOISY_COLOUR = '#d62728', GRID = '#e4e4e4', AXIS = '#444';

// A round step giving about `n` intervals from 0 to max, and the axis top.
function niceAxis(max: number, n = 5): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const raw = max / n, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => s >= raw)!;
  return { top: Math.ceil(max / step - 1e-9) * step, step };
}

// The error bar: the mean ± its margin of error, or for a best-of-rounds figure the range of its
// rounds (the figure is the top of it).
function errorBar(r: BenchRecord): [number, number] | undefined {
  const s = r.spread;
  if (!s || s.samples < 2) return undefined;
  if (s.of === 'best') return [s.min, Math.max(s.max, r.value)];
  const e = (r.value * s.rme) / 100;
  return [r.value - e, r.value + e];
}
const barTop = (r: BenchRecord) => Math.max(r.value, errorBar(r)?.[1] ?? 0);

function panelSvg(p: Panel, records: BenchRecord[], x0: number, y0: number, w: number, h: number): string[] {
  const L = 58, R = 14, T = 30, B = p.bars ? 36 : 44;
  const left = x0 + L, right = x0 + w - R, top = y0 + T, bottom = y0 + h - B;
  const data = records.filter(p.pick).sort(p.bars ? (a, b) => Object.keys(p.bars!).indexOf(a.name) - Object.keys(p.bars!).indexOf(b.name) : (a, b) => a.entries - b.entries);
  const ref = p.reference ? records.find((r) => r.name === p.reference!.name) : undefined;
  const out: string[] = [`<g class="panel" data-unit="${p.unit}">`,
    `<text x="${x0 + L}" y="${y0 + 18}" font-size="14" font-weight="bold">${esc(p.title)}</text>`];
  if (!data.length) {
    out.push(`<text x="${(left + right) / 2}" y="${(top + bottom) / 2}" text-anchor="middle" fill="#888">not measured in this run</text>`, '</g>');
    return out;
  }
  const { top: yTop, step } = niceAxis(Math.max(...data.map(barTop), ref ? barTop(ref) : 0) * 1.12);
  const py = (v: number) => bottom - (Math.max(0, v) / yTop) * (bottom - top);
  for (let v = 0; v <= yTop + 1e-9; v += step) {
    out.push(`<line x1="${left}" y1="${py(v).toFixed(1)}" x2="${right}" y2="${py(v).toFixed(1)}" stroke="${GRID}"/>`,
      `<text x="${left - 6}" y="${(py(v) + 4).toFixed(1)}" text-anchor="end">${+v.toFixed(6)}</text>`);
  }
  const midY = (top + bottom) / 2;
  out.push(`<text x="${x0 + 14}" y="${midY}" text-anchor="middle" transform="rotate(-90 ${x0 + 14} ${midY})">${esc(UNIT_AXIS[p.unit])}</text>`);

  // x positions: named bars evenly, or table sizes on a log scale padded by a quarter decade.
  let px: (r: BenchRecord, i: number) => number;
  if (p.bars) {
    const slot = (right - left) / data.length;
    px = (_r, i) => left + slot * (i + 0.5);
    data.forEach((r, i) => out.push(`<text x="${px(r, i).toFixed(1)}" y="${bottom + 16}" text-anchor="middle">${esc(p.bars![r.name] ?? r.name)}</text>`));
  } else {
    const lo = Math.log10(data[0].entries) - 0.3, hi = Math.log10(data[data.length - 1].entries) + 0.3;
    const d0 = lo, d1 = Math.max(hi, lo + 1);
    const lx = (n: number) => left + ((Math.log10(n) - d0) / (d1 - d0)) * (right - left);
    px = (r) => lx(r.entries);
    for (let e = Math.ceil(d0); e <= Math.floor(d1); e++) {
      out.push(`<line x1="${lx(10 ** e).toFixed(1)}" y1="${top}" x2="${lx(10 ** e).toFixed(1)}" y2="${bottom}" stroke="${GRID}"/>`,
        `<line x1="${lx(10 ** e).toFixed(1)}" y1="${bottom}" x2="${lx(10 ** e).toFixed(1)}" y2="${bottom + 4}" stroke="${AXIS}"/>`,
        `<text x="${lx(10 ** e).toFixed(1)}" y="${bottom + 17}" text-anchor="middle">${countLabel(10 ** e)}</text>`);
    }
    out.push(`<text x="${(left + right) / 2}" y="${bottom + 35}" text-anchor="middle">${esc(p.x)} (log scale)</text>`);
  }
  out.push(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="${AXIS}"/>`, `<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="${AXIS}"/>`);

  if (ref) {
    out.push(`<line x1="${left}" y1="${py(ref.value).toFixed(1)}" x2="${right}" y2="${py(ref.value).toFixed(1)}" stroke="#777" stroke-dasharray="6 4"/>`,
      `<text x="${right - 4}" y="${(py(ref.value) - 5).toFixed(1)}" text-anchor="end" fill="#555">${esc(p.reference!.label)}: ${fixed(ref.value)}${noisy(ref) ? ` ⚠ ±${ref.spread!.rme.toFixed(0)} %` : ''}</text>`);
  }
  if (p.bars) {
    const bw = Math.min(70, ((right - left) / data.length) * 0.5);
    data.forEach((r, i) => out.push(`<rect x="${(px(r, i) - bw / 2).toFixed(1)}" y="${py(r.value).toFixed(1)}" width="${bw.toFixed(1)}" height="${(bottom - py(r.value)).toFixed(1)}" fill="${noisy(r) ? NOISY_COLOUR : COLOUR}" fill-opacity="0.35" stroke="${noisy(r) ? NOISY_COLOUR : COLOUR}"/>`));
  } else if (data.length > 1) {
    out.push(`<polyline fill="none" stroke="${COLOUR}" stroke-width="2" points="${data.map((r, i) => `${px(r, i).toFixed(1)},${py(r.value).toFixed(1)}`).join(' ')}"/>`);
  }
  data.forEach((r, i) => {
    const x = px(r, i), y = py(r.value), bar = errorBar(r), c = noisy(r) ? NOISY_COLOUR : COLOUR;
    if (bar) {
      const a = py(bar[1]), b = py(bar[0]);
      out.push(`<path d="M${x.toFixed(1)} ${a.toFixed(1)}V${b.toFixed(1)}M${(x - 5).toFixed(1)} ${a.toFixed(1)}h10M${(x - 5).toFixed(1)} ${b.toFixed(1)}h10" stroke="${c}" stroke-width="1.5" fill="none"/>`);
    }
    if (!p.bars) out.push(`<circle cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="4" fill="${noisy(r) ? 'white' : c}" stroke="${c}" stroke-width="2"/>`);
    const label = `${fixed(r.value)}${noisy(r) ? ` ⚠ ±${r.spread!.rme.toFixed(0)} %` : ''}`;
    // Beside the point, on its left when it is near the panel's right edge.
    const onLeft = x + 8 + label.length * 6.8 > right + R;
    out.push(`<text x="${(onLeft ? x - 8 : x + 8).toFixed(1)}" y="${(py(barTop(r)) - 4).toFixed(1)}"${onLeft ? ' text-anchor="end"' : ''} fill="${c}"${noisy(r) ? ' font-weight="bold"' : ''}>${esc(label)}</text>`);
  });
  out.push('</g>');
  return out;
}

// The figures that have no table-size axis and no rate of their own kind: memory and socket I/O.
function notesSvg(records: BenchRecord[], x0: number, y0: number): string[] {
  const lines: string[] = [];
  for (const r of records) {
    if (r.unit === 'bytes/conn') lines.push(`memory: ${fixed(r.value)} bytes per tracked connection (table of ${countLabel(r.entries)})`);
    if (r.name === 'udp-transport-64') lines.push(`one UDP transport pair (socket I/O): ${fixed(r.value)} Mpps`);
    if (r.name.startsWith('stream-transport-1514-')) lines.push(`stream transport pair, 1514-byte frames, ${r.name.endsWith('flood') ? 'flooding' : 'paced'}: ${fixed(Number(r.cpuMsPerMB))} ms CPU per MB`);
  }
  const out = [`<g class="notes">`, `<text x="${x0 + 58}" y="${y0 + 18}" font-size="14" font-weight="bold">Other figures</text>`];
  lines.forEach((l, i) => out.push(`<text x="${x0 + 58}" y="${y0 + 44 + i * 20}">${esc(l)}</text>`));
  const y = y0 + 44 + lines.length * 20 + 14;
  out.push(`<text x="${x0 + 58}" y="${y}" fill="#555">Packet rates: mean of the samples, error bars ± its 95 %</text>`,
    `<text x="${x0 + 58}" y="${y + 18}" fill="#555">margin of error. Connection rates: best of several rounds,</text>`,
    `<text x="${x0 + 58}" y="${y + 36}" fill="#555">error bars the range of the rounds.</text>`,
    `<text x="${x0 + 58}" y="${y + 60}" fill="${NOISY_COLOUR}">⚠ (red): margin of error above ±${NOISY} %, not to be quoted.</text>`, '</g>');
  return out;
}

export function renderChart(results: Record<string, BenchRecord[]>, run: RunInfo): string {
  const all = Object.values(results).flat();
  const W = 1000, PW = 500, PH = 290, HEAD = 70, cols = 2;
  const slots = PANELS.length + 1, rows = Math.ceil(slots / cols);
  const H = HEAD + rows * PH + 10;
  const out: string[] = [`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12" fill="#222">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="20" y="26" font-size="17" font-weight="bold">netplane benchmarks: 64-byte frames, batches of 256, release build, one core</text>`,
    `<text class="machine" x="20" y="48" font-size="13">${esc(describeMachine(run.machine))}</text>`,
    `<text class="date" x="20" y="64" font-size="13">${esc(describeRun(run))}</text>`];
  const noisyCount = all.filter(noisy).length;
  if (noisyCount) out.push(`<text x="${W - 20}" y="48" font-size="13" text-anchor="end" fill="${NOISY_COLOUR}" font-weight="bold">⚠ ${noisyCount} figure${noisyCount > 1 ? 's' : ''} with a spread (95 % margin) above ±${NOISY} %</text>`);
  else out.push(`<text x="${W - 20}" y="48" font-size="13" text-anchor="end" fill="#555">every figure's spread (95 % margin) within ±${NOISY} %</text>`);
  PANELS.forEach((p, i) => out.push(...panelSvg(p, all, (i % cols) * PW, HEAD + Math.floor(i / cols) * PH, PW, PH)));
  out.push(...notesSvg(all, (PANELS.length % cols) * PW, HEAD + Math.floor(PANELS.length / cols) * PH));
  out.push('</svg>');
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------------
// report.md

const TABLES: Array<{ unit: Unit; title: string; head: string }> = [
  { unit: 'Mpps', title: 'Packet rates', head: 'Mpps' },
  { unit: 'Mconn/s', title: 'New connections', head: 'M conn/s' },
  { unit: 'bytes/conn', title: 'Memory', head: 'bytes per connection' },
];

export function renderMarkdown(results: Record<string, BenchRecord[]>, run: RunInfo): string {
  const all = Object.values(results).flat();
  const bad = all.filter(noisy);
  const lines = ['# netplane benchmark report', '',
    `Run: ${describeRun(run)}.`, '', `Machine: ${describeMachine(run.machine)}.`, ''];
  if (bad.length) {
    lines.push(`> **⚠ Warning: ${bad.length} of ${all.filter((r) => r.spread).length} timed figures ${bad.length === 1 ? 'has' : 'have'} a spread above ±${NOISY} %** ` +
      `(${bad.map((r) => `${r.name} ±${r.spread!.rme.toFixed(0)} %`).join(', ')}): a spread this wide usually means the machine was busy; ` +
      `do not quote ${bad.length === 1 ? 'it' : 'them'}, run again on a quiet machine.`, '');
  } else {
    lines.push(`Every timed figure's spread is within ±${NOISY} %.`, '');
  }
  lines.push('Every case copies fresh 64-byte frames into the module for each batch of 256 and makes one call per batch; ' +
    'docs/performance.md says what each measures.', '',
    `*±* is the figure's 95 % margin of error (benchmark.js's relative margin of error over its samples; for connection rates, ` +
    'whose figure is the best of several rounds, the same computed over the rounds); *range* is the slowest and the fastest ' +
    'sample or round. The chart draws packet rates with ± as error bars, connection rates with their range.', '',
    '![The figures of this run, one panel per quantity](chart.svg)', '');
  for (const t of TABLES) {
    const rows = all.filter((r) => r.unit === t.unit);
    if (!rows.length) continue;
    lines.push(`## ${t.title} (${t.head})`, '');
    if (t.unit === 'bytes/conn') {
      lines.push(`| case | table | ${t.head} |`, '|---|---|---|');
      for (const r of rows) lines.push(`| ${r.name} | ${grouped(r.entries)} ${r.entriesOf} | ${fixed(r.value)} |`);
    } else {
      lines.push(`| case | table | ${t.head} | ± | range | samples | note |`, '|---|---|---|---|---|---|---|');
      for (const r of rows) {
        const s = r.spread;
        const of = r.processes ? `median of ${r.processes.length} processes (${r.processes.map(fixed).join(', ')})` : '';
        const note = [of, !s ? 'one timed run: spread not measured' : noisy(r) ? `⚠ **spread ±${s.rme.toFixed(0)} % > ${NOISY} %: noisy, do not quote**` : ''].filter(Boolean).join('; ');
        lines.push(`| ${r.name} | ${grouped(r.entries)} ${r.entriesOf} | ${fixed(r.value)} | ${s ? `±${s.rme.toFixed(1)} %` : '–'} | ` +
          `${s ? `${fixed(s.min)} – ${fixed(s.max)}` : '–'} | ${s ? `${s.samples}${s.of === 'best' ? ' rounds (best)' : ''}` : '1'} | ${note} |`);
      }
    }
    lines.push('');
  }
  return lines.join('\n');
}

export function writeReport(dir: string, results: Record<string, BenchRecord[]>, run: RunInfo): string {
  writeFileSync(join(dir, 'chart.svg'), renderChart(results, run));
  const file = join(dir, 'report.md');
  writeFileSync(file, renderMarkdown(results, run));
  return file;
}
