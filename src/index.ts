// netplane's SDK entry point: the switch and its raw dataplane, frame builders and a dissector, pcap.
export * from './dataplane.js';
export * from './router.js';
export { Overlay, OVERLAY_DEFAULTS, type UnderlaySpec, type RemoteEndpointSpec as OverlayRemoteSpec, type RemoteEndpoint as OverlayRemote } from './overlay.js';
export { DhcpServer, DHCP_DROP_REASONS, type DhcpServerOptions, type DhcpStaticLease, type DhcpRoute, type DhcpCounters, type DhcpDropReason, type DhcpLease, type DhcpState } from './dhcp.js';
export { DnsServer, DNS_DROP_REASONS, DNS_UPSTREAM_IGNORED, parseResolvConf, parseUpstream, type DnsServerOptions, type DnsNames, type DnsCounters, type DnsDropReason, type DnsUpstreamIgnored, type DnsUpstream } from './dns.js';
export { Dhcp6Server, DHCP6_DROP_REASONS, type Dhcp6ServerOptions, type Dhcp6Binding, type Dhcp6Counters, type Dhcp6DropReason, type Dhcp6Lease, type Dhcp6State } from './dhcp6.js';
export { RouterAdvertiser, RA_DROP_REASONS, linkLocal, type RouterAdvertiserOptions, type RaPrefix, type RaCounters, type RaDropReason, type RaTimer } from './ra.js';
export * from './acl.js';
export * from './trace.js';
export { compileAcl, AclError } from './compile/acl.js';
export * from './frames.js';
export * from './pcap.js';
export * from './host.js';
export { Store } from './model/store.js';
export { ModelError } from './model/validate.js';
export { saveState, loadState, StateFileError, saveClusterView, loadClusterView } from './model/persist.js';
export type * from './model/types.js';
export type { HostConfig, OverlayConfig } from './compile/host.js';
export { UnderlayTransport, type UnderlayOptions, type UnderlayStats } from './transports/underlay.js';
export { UdpTransport, type UdpOptions } from './transports/udp.js';
export { StreamTransport, StreamServer, type StreamOptions, type StreamServerOptions } from './transports/stream.js';
export { WebSocketTransport, type WebSocketOptions } from './transports/websocket.js';
export { WebSocketClientTransport, type WebSocketClientOptions, type WebSocketClientState, type WebSocketLike, type WebSocketClass } from './transports/wsclient.js';
export { Pump, type TransportStats } from './transports/pump.js';
export { TapTransport, nativeTapAvailable } from './transports/tap.js';
export { IoWorker, IoTap, type IoWorkerOptions } from './worker/io.js';
export { Ring as FrameRing } from './worker/ring.js';   // the ring's format: docs/ABI.md "The frame ring"
export { SocketUplink, DEFAULT_LIMITS, UPLINK_COUNTERS, UPLINK_REFUSALS, type SocketUplinkOptions, type UplinkLimits, type UplinkFlow, type UplinkRefusal, type TcpFlowKey, type TcpEngineOptions, type TcpEngineLike, type TcpEngineFactory } from './uplink/index.js';
