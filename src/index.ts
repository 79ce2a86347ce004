// netplane's SDK entry point: the switch and its raw dataplane, frame builders and a dissector, pcap.
export * from './dataplane.js';
export * from './router.js';
export * from './acl.js';
export * from './trace.js';
export { compileAcl, AclError } from './compile/acl.js';
export * from './frames.js';
export * from './pcap.js';
