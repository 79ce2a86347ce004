// netplane's browser entry (`netplane/web`, and `netplane` under the `browser` condition): the same
// switch, router, ACLs, trace, frame builders and dissector, and pcap in memory as the Node.js entry,
// with no `node:` import and no dependency at all. What differs is loading and I/O: the module is
// fetched and compiled asynchronously (`await Switch.create()`, or `new Switch({ module })` with a
// module from `compileModule`), captures go to memory (PcapRecorder), and the one transport is a
// WebSocket client to a daemon's WebSocket endpoint. rollup.config.js refuses to build this bundle if
// anything in its graph imports a `node:` module or `ws`.
import { Switch, type SwitchCreateOptions } from './switch.js';

export * from './switch.js';
export * from './router.js';
export * from './acl.js';
export { Overlay, OVERLAY_DEFAULTS, type UnderlaySpec, type RemoteEndpointSpec as OverlayRemoteSpec, type RemoteEndpoint as OverlayRemote } from './overlay.js';
export * from './trace.js';
export { compileAcl, AclError } from './compile/acl.js';
export * from './frames.js';
export { LINKTYPE_ETHERNET, writePcap, readPcap, PcapRecorder, type PcapRecord, type PcapWriteOptions, type PcapFile, type PcapSink } from './pcap-format.js';
export { WebSocketClientTransport, type WebSocketClientOptions, type WebSocketClientState, type WebSocketLike, type WebSocketClass } from './transports/wsclient.js';
export type { TransportStats } from './transports/pump.js';

// `await createSwitch({ wasm })`: Switch.create as a function.
export function createSwitch(opts: SwitchCreateOptions = {}): Promise<Switch> {
  return Switch.create(opts);
}
