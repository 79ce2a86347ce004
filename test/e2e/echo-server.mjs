// A server for the socket uplink's tests, run inside a namespace outside the virtual network
// (test/uplink.test.ts): UDP echo on IPv4 and IPv6 (one socket each, so back-to-back datagrams from
// many peers are all answered, which socat's fork-per-peer does not promise), and a TCP server that
// sends the bytes of a file (argv[3]) to each client and closes.
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { createReadStream } from 'node:fs';

const port = Number(process.argv[2]);
for (const [type, host] of [['udp4', '0.0.0.0'], ['udp6', '::']]) {
  const s = createSocket({ type, ipv6Only: type === 'udp6' });
  s.on('message', (m, r) => s.send(m, r.port, r.address));
  s.bind(port, host);
}
if (process.argv[3]) createServer((c) => { c.on('error', () => {}); createReadStream(process.argv[3]).pipe(c); }).listen({ port, host: '::' });
