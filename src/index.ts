// netplane's SDK entry point: the switch and its raw dataplane, frame builders and a dissector, pcap.
export * from './dataplane.js';
export * from './router.js';
export * from './acl.js';
export * from './trace.js';
export { compileAcl, AclError } from './compile/acl.js';
export * from './frames.js';
export * from './pcap.js';
export * from './host.js';
export { Store } from './model/store.js';
export { ModelError } from './model/validate.js';
export { saveState, loadState, StateFileError } from './model/persist.js';
export type * from './model/types.js';
export type { HostConfig } from './compile/host.js';
export { UdpTransport, type UdpOptions } from './transports/udp.js';
export { StreamTransport, StreamServer, type StreamOptions, type StreamServerOptions } from './transports/stream.js';
export { WebSocketTransport, type WebSocketOptions } from './transports/websocket.js';
export { Pump, type TransportStats } from './transports/pump.js';
export { TapTransport, nativeTapAvailable } from './transports/tap.js';
