const [name, secs] = [process.argv[2], Number(process.argv[3] ?? 5)];
const sizes: any = { 'l2-1k': 1024, 'l2-1M': 1<<20, 'nat-1M': 1<<20, 'nat-10k': 10000 };
const run = name.startsWith('l2') ? (await import('./l2.ts')).l2Setup(sizes[name]) : (await import('./l3.ts')).establishedSetup(sizes[name]);
for (let i = 0; i < 2000; i++) run();
const end = Date.now() + secs * 1000; let n = 0;
const t0 = process.cpuUsage();
while (Date.now() < end) { for (let i = 0; i < 100; i++) run(); n += 100; }
const c = process.cpuUsage(t0);
console.log(name, (n * 256 / ((c.user + c.system) / 1e6) / 1e6).toFixed(2), 'Mpps');
