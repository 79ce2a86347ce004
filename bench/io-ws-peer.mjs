// The far side of bench/io.ts's WebSocket case: one client, as a browser VM (v86) would be, counting
// the binary messages the switch sends it. It says when it is connected, then reports, once asked, the
// messages and bytes it got and over how long (from the first message to the last).
import WebSocket from 'ws';

const [url] = process.argv.slice(2);
const ws = new WebSocket(url);
let frames = 0, bytes = 0, first = 0n, last = 0n;
ws.on('message', (m) => {
  if (frames === 0) first = process.hrtime.bigint();
  frames++; bytes += m.length;
  last = process.hrtime.bigint();
});
ws.on('open', () => process.send({ ready: 1 }));
process.on('message', () => {
  process.send({ frames, bytes, ms: Number(last - first) / 1e6 });
  ws.terminate();
  process.disconnect();
});
