// netplane's optional native TAP attach for Linux: opens a TAP device and moves frames between it and
// JavaScript buffers without socat and a UDP socket in between (two system calls a frame fewer, and
// no extra process). JavaScript is told when the device is readable (a libuv poll) and then drains it
// in one call, many frames at a time, into one buffer; a batch of frames leaves in one call too (one
// writev() per frame in a C loop: a TAP takes one frame per write, it has no sendmmsg).
// With offloads the TAP is opened with IFF_VNET_HDR: every frame read or written is preceded by
// Linux's 12-byte virtio_net_hdr_v1 (TUNSETVNETHDRSZ), and TUNSETOFFLOAD tells the kernel which
// super-frames (TSO, USO) and partial checksums we take, so a TCP sender in the namespace hands us
// 64 KiB segments instead of 1500-byte frames, and the kernel behind the other TAP takes them whole.
// Built by node-gyp when a compiler is there; netplane works without it (src/transports/tap.ts).
// It also moves the UDP transport's datagrams in batches (src/transports/udp.ts): its own UDP socket,
// polled like a TAP, drained with recvmmsg() and written with sendmmsg(), one call per batch each way,
// where Node's dgram socket costs a system call and an event per datagram.
// It also carries the overlay's underlay (src/transports/underlay.ts): VXLAN datagrams arrive on a UDP
// socket (udpRecv above) and leave by UDP sockets in batches, a run of one flow's equal datagrams as
// one UDP GSO send (udpSendSegments).
// It also opens the socket uplink's unprivileged ICMP echo ("ping") sockets (src/uplink/ping.ts),
// socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP) and its ICMPv6 twin, which Node.js has no API for: the
// kernel allows them to the groups in net.ipv4.ping_group_range, without CAP_NET_RAW.
// And it asks for huge pages for the dataplane's memory (hugePages below, src/dataplane.ts).
#define _GNU_SOURCE   // recvmmsg, sendmmsg
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <sys/mman.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netinet/udp.h>
#include <linux/filter.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

typedef struct { uv_poll_t poll; napi_env env; napi_ref cb; int fd; int active; } Poller;

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_error(env, NULL, #call " failed"); return NULL; } } while (0)

// Throws "what: description (ENAME)" with the errno's name as the error's `code`, as Node's own
// socket errors carry it (callers and logs match on EADDRINUSE, EACCES...).
static napi_value throw_errno(napi_env env, const char *what) {
  int e = errno;
  char msg[256];
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(e);
#else
  const char *name = NULL;
#endif
  if (name) snprintf(msg, sizeof msg, "%s: %s (%s)", what, strerror(e), name);
  else snprintf(msg, sizeof msg, "%s: %s", what, strerror(e));
  napi_throw_error(env, name, msg);
  return NULL;
}

// Older userspace headers lack the UDP segmentation offloads (Linux 6.2).
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif

#define VNET_HDR_LEN 12   // struct virtio_net_hdr_v1 (= virtio_net_hdr_mrg_rxbuf)

static napi_value fail_fd(napi_env env, int fd, const char *what) {
  int e = errno; close(fd); errno = e;
  return throw_errno(env, what);
}

// open(name, offloads) -> [fd, accepted]: a TAP device without packet information, non-blocking.
// offloads < 0: plain frames (no vnet header), accepted is -1. Otherwise the TAP carries a vnet header
// and the kernel is offered the TUN_F_* bits in `offloads`; a kernel that refuses them (EINVAL: USO
// before 6.2) is offered them again without USO, then without anything but the checksum, then none.
// accepted: the bits the kernel took.
static napi_value Open(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ] = {0}; size_t len;
  CHECK(napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len));
  int32_t want; CHECK(napi_get_value_int32(env, argv[1], &want));
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open /dev/net/tun");
  struct ifreq ifr; memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (want >= 0 ? IFF_VNET_HDR : 0);
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) return fail_fd(env, fd, "TUNSETIFF");
  int32_t accepted = -1;
  if (want >= 0) {
    int hdr = VNET_HDR_LEN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0) return fail_fd(env, fd, "TUNSETVNETHDRSZ");
    unsigned int tries[4] = {
      (unsigned)want,
      (unsigned)want & ~(unsigned)(TUN_F_USO4 | TUN_F_USO6),
      (unsigned)want & TUN_F_CSUM,
      0,
    };
    for (int i = 0; i < 4; i++) {
      if (i > 0 && tries[i] == tries[i - 1]) continue;
      if (ioctl(fd, TUNSETOFFLOAD, tries[i]) == 0) { accepted = (int32_t)tries[i]; break; }
      if (errno != EINVAL) return fail_fd(env, fd, "TUNSETOFFLOAD");
    }
    if (accepted < 0) return fail_fd(env, fd, "TUNSETOFFLOAD");
  }
  napi_value out, a, b;
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_int32(env, fd, &a));
  CHECK(napi_create_int32(env, accepted, &b));
  CHECK(napi_set_element(env, out, 0, a));
  CHECK(napi_set_element(env, out, 1, b));
  return out;
}

// read(fd, buf, lens, slot) -> n: reads frames into buf at offsets i * slot, their lengths into lens,
// until the device is empty or the buffers are full.
static napi_value Read(napi_env env, napi_callback_info info) {
  size_t argc = 4; napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, slot; CHECK(napi_get_value_int32(env, argv[0], &fd)); CHECK(napi_get_value_int32(env, argv[3], &slot));
  napi_typedarray_type t; size_t blen, llen; void *bdata, *ldata; napi_value ab; size_t boff;
  CHECK(napi_get_typedarray_info(env, argv[1], &t, &blen, &bdata, &ab, &boff));
  CHECK(napi_get_typedarray_info(env, argv[2], &t, &llen, &ldata, &ab, &boff));
  uint8_t *buf = bdata; uint32_t *lens = ldata;
  size_t max = slot > 0 ? blen / (size_t)slot : 0;
  if (max > llen) max = llen;
  size_t n = 0;
  while (n < max) {
    ssize_t r = read(fd, buf + n * (size_t)slot, (size_t)slot);
    if (r < 0) { if (errno == EINTR) continue; break; }
    lens[n++] = (uint32_t)r;
  }
  napi_value out; CHECK(napi_create_uint32(env, (uint32_t)n, &out));
  return out;
}

// write(fd, base, desc, n, hdrLen) -> frames written. desc holds n records of three u32, offsets into
// base: [header, frame, frame length]; each frame goes out with one writev(header, frame), its header
// hdrLen bytes (0: a plain TAP, no header). A frame the device refuses (EAGAIN: its queue is full;
// EINVAL: a header it does not take) is dropped and the loop goes on; the caller counts
// n - written as dropped.
static napi_value Write(napi_env env, napi_callback_info info) {
  size_t argc = 5; napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, n, hdrLen;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_int32(env, argv[3], &n));
  CHECK(napi_get_value_int32(env, argv[4], &hdrLen));
  napi_typedarray_type t; size_t blen, dlen; void *bdata, *ddata; napi_value ab; size_t off;
  CHECK(napi_get_typedarray_info(env, argv[1], &t, &blen, &bdata, &ab, &off));
  CHECK(napi_get_typedarray_info(env, argv[2], &t, &dlen, &ddata, &ab, &off));
  uint8_t *base = bdata; const uint32_t *desc = ddata;
  if (n < 0 || (size_t)n * 3 > dlen || hdrLen < 0) { napi_throw_range_error(env, NULL, "write: bad batch"); return NULL; }
  uint32_t written = 0;
  for (int32_t i = 0; i < n; i++) {
    size_t h = desc[i * 3], f = desc[i * 3 + 1], len = desc[i * 3 + 2];
    if (h + (size_t)hdrLen > blen || f + len > blen) continue;   // out of the buffer: dropped, never read
    struct iovec iov[2] = { { base + h, (size_t)hdrLen }, { base + f, len } };
    ssize_t r;
    do r = hdrLen ? writev(fd, iov, 2) : write(fd, base + f, len); while (r < 0 && errno == EINTR);
    if (r >= 0) written++;
  }
  napi_value out; CHECK(napi_create_uint32(env, written, &out));
  return out;
}

static void on_readable(uv_poll_t *h, int status, int events) {
  Poller *p = (Poller *)h->data;
  napi_handle_scope scope; napi_open_handle_scope(p->env, &scope);
  napi_value cb, global, result;
  napi_get_reference_value(p->env, p->cb, &cb);
  napi_get_global(p->env, &global);
  napi_call_function(p->env, global, cb, 0, NULL, &result);
  napi_close_handle_scope(p->env, scope);
}

static void on_closed(uv_handle_t *h) { free(h->data); }

static void finalize_poller(napi_env env, void *data, void *hint) {
  Poller *p = data;
  if (p->active) { uv_poll_stop(&p->poll); p->active = 0; }
  napi_delete_reference(env, p->cb);
  uv_close((uv_handle_t *)&p->poll, on_closed);
}

// poll(fd, callback) -> handle: calls back whenever the device is readable; stop(handle) ends it.
static napi_value Poll(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd; CHECK(napi_get_value_int32(env, argv[0], &fd));
  uv_loop_t *loop; CHECK(napi_get_uv_event_loop(env, &loop));
  Poller *p = calloc(1, sizeof *p);
  p->env = env; p->fd = fd; p->poll.data = p;
  CHECK(napi_create_reference(env, argv[1], 1, &p->cb));
  if (uv_poll_init(loop, &p->poll, fd) != 0) { free(p); napi_throw_error(env, NULL, "uv_poll_init failed"); return NULL; }
  uv_poll_start(&p->poll, UV_READABLE, on_readable);
  p->active = 1;
  napi_value handle; CHECK(napi_create_object(env, &handle));
  CHECK(napi_wrap(env, handle, p, finalize_poller, NULL, NULL));
  return handle;
}

static napi_value Stop(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  Poller *p; CHECK(napi_unwrap(env, argv[0], (void **)&p));
  if (p->active) { uv_poll_stop(&p->poll); p->active = 0; }
  return NULL;
}

static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd; CHECK(napi_get_value_int32(env, argv[0], &fd));
  close(fd);
  return NULL;
}

// Sets socket option `opt` (SO_SNDBUF or SO_RCVBUF) of fd to argv[1] bytes and returns what the
// kernel made of it (it doubles the request after capping it at net.core.wmem_max / rmem_max), or
// -errno.
static napi_value SockBuf(napi_env env, napi_callback_info info, int opt) {
  size_t argc = 2; napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, want; CHECK(napi_get_value_int32(env, argv[0], &fd)); CHECK(napi_get_value_int32(env, argv[1], &want));
  int got = 0; socklen_t len = sizeof got;
  int r = setsockopt(fd, SOL_SOCKET, opt, &want, sizeof want) < 0 || getsockopt(fd, SOL_SOCKET, opt, &got, &len) < 0 ? -errno : got;
  napi_value out; CHECK(napi_create_int32(env, r, &out));
  return out;
}

// sndBuf(fd, bytes) -> the socket's send buffer after asking for `bytes`, or -errno. Node.js sets no
// socket buffer sizes on a net.Socket; the stream transport asks for a larger one on its client's
// unix socket.
static napi_value SndBuf(napi_env env, napi_callback_info info) { return SockBuf(env, info, SO_SNDBUF); }

// rcvBuf(fd, bytes) -> the socket's receive buffer after asking for `bytes`, or -errno. A UDP
// socket's default (rmem_default, 208 KiB here) holds about 90 datagrams of 1500 bytes: a burst of a
// super-frame's VXLAN segments, or a guest's, overflows it while the event loop is busy elsewhere,
// and each overflow is a lost segment.
static napi_value RcvBuf(napi_env env, napi_callback_info info) { return SockBuf(env, info, SO_RCVBUF); }

// pingOpen(v6) -> fd, or -errno (EACCES when ping_group_range leaves our group out).
static napi_value PingOpen(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool v6; CHECK(napi_get_value_bool(env, argv[0], &v6));
  int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
  napi_value out; CHECK(napi_create_int32(env, fd < 0 ? -errno : fd, &out));
  return out;
}

// pingSend(fd, v6, address, message) -> bytes sent, or -errno. The message is the ICMP echo request
// from its type on; the kernel sets the identifier (the socket's port) and the checksum.
static napi_value PingSend(napi_env env, napi_callback_info info) {
  size_t argc = 4; napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd; CHECK(napi_get_value_int32(env, argv[0], &fd));
  bool v6; CHECK(napi_get_value_bool(env, argv[1], &v6));
  char addr[64] = {0}; size_t alen;
  CHECK(napi_get_value_string_utf8(env, argv[2], addr, sizeof addr, &alen));
  napi_typedarray_type t; size_t len; void *data; napi_value ab; size_t off;
  CHECK(napi_get_typedarray_info(env, argv[3], &t, &len, &data, &ab, &off));
  struct sockaddr_storage ss; memset(&ss, 0, sizeof ss);
  socklen_t sl;
  int ok;
  if (v6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss; a->sin6_family = AF_INET6; sl = sizeof *a;
    ok = inet_pton(AF_INET6, addr, &a->sin6_addr);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss; a->sin_family = AF_INET; sl = sizeof *a;
    ok = inet_pton(AF_INET, addr, &a->sin_addr);
  }
  ssize_t r = ok == 1 ? sendto(fd, data, len, 0, (struct sockaddr *)&ss, sl) : (errno = EINVAL, -1);
  napi_value out; CHECK(napi_create_int32(env, r < 0 ? -errno : (int32_t)r, &out));
  return out;
}

// pingRecv(fd, buf) -> [length, source address] for one echo reply (ICMP header on, no IP header),
// null when there is none, or -errno.
static napi_value PingRecv(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd; CHECK(napi_get_value_int32(env, argv[0], &fd));
  napi_typedarray_type t; size_t len; void *data; napi_value ab; size_t off;
  CHECK(napi_get_typedarray_info(env, argv[1], &t, &len, &data, &ab, &off));
  struct sockaddr_storage ss; socklen_t sl = sizeof ss;
  ssize_t r;
  do r = recvfrom(fd, data, len, 0, (struct sockaddr *)&ss, &sl); while (r < 0 && errno == EINTR);
  napi_value out;
  if (r < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) { CHECK(napi_get_null(env, &out)); return out; }
    CHECK(napi_create_int32(env, -errno, &out));
    return out;
  }
  char name[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET6) inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, name, sizeof name);
  else inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, name, sizeof name);
  napi_value n, a;
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_uint32(env, (uint32_t)r, &n));
  CHECK(napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &a));
  CHECK(napi_set_element(env, out, 0, n));
  CHECK(napi_set_element(env, out, 1, a));
  return out;
}

// ---- UDP in batches (src/transports/udp.ts) --------------------------------------------------------

// An address record, 20 bytes: u8 family (4 or 6), u8 0, u16 port (big-endian), 16 bytes of address
// (IPv4 in the first 4). JavaScript compares a datagram's source with its peer's record bytewise.
#define ADDR_REC 20

static void put_addr(uint8_t *rec, const struct sockaddr_storage *ss) {
  memset(rec, 0, ADDR_REC);
  if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    rec[0] = 6; memcpy(rec + 2, &a->sin6_port, 2); memcpy(rec + 4, &a->sin6_addr, 16);
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    rec[0] = 4; memcpy(rec + 2, &a->sin_port, 2); memcpy(rec + 4, &a->sin_addr, 4);
  }
}

static socklen_t get_addr(struct sockaddr_storage *ss, const uint8_t *rec) {
  memset(ss, 0, sizeof *ss);
  if (rec[0] == 6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6; memcpy(&a->sin6_port, rec + 2, 2); memcpy(&a->sin6_addr, rec + 4, 16);
    return sizeof *a;
  }
  struct sockaddr_in *a = (struct sockaddr_in *)ss;
  a->sin_family = AF_INET; memcpy(&a->sin_port, rec + 2, 2); memcpy(&a->sin_addr, rec + 4, 4);
  return sizeof *a;
}

// udpOpen(address record) -> [fd, port]: a non-blocking UDP socket bound to the record's address
// (port 0: any free one). Throws "bind: ... (EADDRINUSE)", the errno name also as the code, as Node's dgram would refuse the address.
static napi_value UdpOpen(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_typedarray_type t; size_t len; void *data; napi_value ab; size_t off;
  CHECK(napi_get_typedarray_info(env, argv[0], &t, &len, &data, &ab, &off));
  if (len < ADDR_REC) { napi_throw_range_error(env, NULL, "udpOpen: bad address"); return NULL; }
  struct sockaddr_storage ss; socklen_t sl = get_addr(&ss, data);
  int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket");
  if (bind(fd, (struct sockaddr *)&ss, sl) < 0) return fail_fd(env, fd, "bind");
  sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) return fail_fd(env, fd, "getsockname");
  uint8_t rec[ADDR_REC]; put_addr(rec, &ss);
  napi_value out, a, b;
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_create_int32(env, fd, &a));
  CHECK(napi_create_uint32(env, (uint32_t)((rec[2] << 8) | rec[3]), &b));
  CHECK(napi_set_element(env, out, 0, a));
  CHECK(napi_set_element(env, out, 1, b));
  return out;
}

#define MMSG_CHUNK 64

// udpRecv(fd, buf, lens, slot, from[, segs]) -> n: datagrams into buf at offsets i * slot (a longer
// one is truncated: its length says slot + 1), their lengths into lens, their sources into from (a
// record each), with recvmmsg until the socket is empty or the buffers are full. With segs, on a
// socket with UDP_GRO (udpGro): what the kernel coalesced comes as one message of equal datagrams
// back to back, the last shorter, and segs gets their size (0 for a message that is one datagram).
static napi_value UdpRecv(napi_env env, napi_callback_info info) {
  size_t argc = 6; napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, slot; CHECK(napi_get_value_int32(env, argv[0], &fd)); CHECK(napi_get_value_int32(env, argv[3], &slot));
  napi_typedarray_type t; size_t blen, llen, flen, slen = 0; void *bdata, *ldata, *fdata, *sdata = NULL; napi_value ab; size_t boff;
  CHECK(napi_get_typedarray_info(env, argv[1], &t, &blen, &bdata, &ab, &boff));
  CHECK(napi_get_typedarray_info(env, argv[2], &t, &llen, &ldata, &ab, &boff));
  CHECK(napi_get_typedarray_info(env, argv[4], &t, &flen, &fdata, &ab, &boff));
  if (argc >= 6) {
    napi_valuetype vt; CHECK(napi_typeof(env, argv[5], &vt));
    if (vt != napi_undefined) {
      CHECK(napi_get_typedarray_info(env, argv[5], &t, &slen, &sdata, &ab, &boff));
      if (t != napi_uint32_array) { napi_throw_type_error(env, NULL, "udpRecv: segs must be a Uint32Array"); return NULL; }
    }
  }
  uint8_t *buf = bdata, *from = fdata; uint32_t *lens = ldata, *segs = sdata;
  size_t max = slot > 0 ? blen / (size_t)slot : 0;
  if (max > llen) max = llen;
  if (max > flen / ADDR_REC) max = flen / ADDR_REC;
  if (segs && max > slen) max = slen;
  size_t n = 0;
  struct mmsghdr m[MMSG_CHUNK]; struct iovec iov[MMSG_CHUNK]; struct sockaddr_storage ss[MMSG_CHUNK];
  union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } ctl[MMSG_CHUNK];
  while (n < max) {
    unsigned k = max - n < MMSG_CHUNK ? (unsigned)(max - n) : MMSG_CHUNK;
    memset(m, 0, sizeof(struct mmsghdr) * k);
    for (unsigned i = 0; i < k; i++) {
      iov[i].iov_base = buf + (n + i) * (size_t)slot; iov[i].iov_len = (size_t)slot;
      m[i].msg_hdr.msg_iov = &iov[i]; m[i].msg_hdr.msg_iovlen = 1;
      m[i].msg_hdr.msg_name = &ss[i]; m[i].msg_hdr.msg_namelen = sizeof ss[i];
      if (segs) { m[i].msg_hdr.msg_control = ctl[i].buf; m[i].msg_hdr.msg_controllen = sizeof ctl[i].buf; }
    }
    int r = recvmmsg(fd, m, k, MSG_DONTWAIT, NULL);
    if (r < 0) { if (errno == EINTR) continue; break; }
    for (int i = 0; i < r; i++) {
      lens[n + i] = (m[i].msg_hdr.msg_flags & MSG_TRUNC) ? (uint32_t)slot + 1 : m[i].msg_len;
      put_addr(from + (n + i) * ADDR_REC, &ss[i]);
      if (segs) {
        uint32_t g = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m[i].msg_hdr); c; c = CMSG_NXTHDR(&m[i].msg_hdr, c)) {
          if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) { int v; memcpy(&v, CMSG_DATA(c), sizeof v); g = v > 0 ? (uint32_t)v : 0; }
        }
        segs[n + i] = g;
      }
    }
    n += (size_t)r;
    if ((unsigned)r < k) break;
  }
  napi_value out; CHECK(napi_create_uint32(env, (uint32_t)n, &out));
  return out;
}

// One sendmmsg of k prepared messages (k > 0): how many the socket took; 0 when it refused the first
// (EMSGSIZE, EHOSTUNREACH...: the caller drops that one); -1 when its buffer is full (EAGAIN: the
// caller drops the rest). Interrupted calls are made again.
static int send_some(int fd, struct mmsghdr *m, unsigned k) {
  for (;;) {
    int r = sendmmsg(fd, m, k, MSG_DONTWAIT);
    if (r >= 0) return r;
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : 0;
  }
}

// Sends the n frames of desc (write()'s layout, its header offset unused) from base with sendmmsg,
// all to `to`. A frame outside the buffer is dropped unread; one the socket refuses (EAGAIN: its
// buffer is full, which drops the rest; EMSGSIZE, EHOSTUNREACH...) is skipped. Returns how many were
// sent; the caller counts the others.
static uint32_t send_batch(int fd, uint8_t *base, size_t blen, const uint32_t *desc, int32_t n,
                           const struct sockaddr_storage *to, socklen_t toLen) {
  struct mmsghdr m[MMSG_CHUNK]; struct iovec iov[MMSG_CHUNK];
  uint32_t sent = 0;
  int32_t i = 0;
  while (i < n) {
    unsigned k = 0;
    while (k < MMSG_CHUNK && i + (int32_t)k < n) {
      size_t f = desc[(i + k) * 3 + 1], len = desc[(i + k) * 3 + 2];
      if (f + len > blen) break;
      iov[k].iov_base = base + f; iov[k].iov_len = len;
      memset(&m[k], 0, sizeof m[k]);
      m[k].msg_hdr.msg_iov = &iov[k]; m[k].msg_hdr.msg_iovlen = 1;
      m[k].msg_hdr.msg_name = (void *)to; m[k].msg_hdr.msg_namelen = toLen;
      k++;
    }
    if (k == 0) { i++; continue; }   // unreadable: dropped, never read
    int r = send_some(fd, m, k);
    if (r < 0) break;                // the socket's buffer is full: the rest is dropped
    if (r == 0) { i++; continue; }   // this one is refused: dropped
    sent += (uint32_t)r; i += r;
  }
  return sent;
}

// udpSend(fd, base, desc, n, to) -> datagrams sent: desc as write()'s (its header offset unused), all
// to the address record `to`, with sendmmsg (send_batch says what is dropped); the caller counts
// n - sent as dropped.
static napi_value UdpSend(napi_env env, napi_callback_info info) {
  size_t argc = 5; napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, n;
  CHECK(napi_get_value_int32(env, argv[0], &fd));
  CHECK(napi_get_value_int32(env, argv[3], &n));
  napi_typedarray_type t; size_t blen, dlen, tlen; void *bdata, *ddata, *tdata; napi_value ab; size_t off;
  CHECK(napi_get_typedarray_info(env, argv[1], &t, &blen, &bdata, &ab, &off));
  CHECK(napi_get_typedarray_info(env, argv[2], &t, &dlen, &ddata, &ab, &off));
  CHECK(napi_get_typedarray_info(env, argv[4], &t, &tlen, &tdata, &ab, &off));
  if (n < 0 || (size_t)n * 3 > dlen || tlen < ADDR_REC) { napi_throw_range_error(env, NULL, "udpSend: bad batch"); return NULL; }
  struct sockaddr_storage ss; socklen_t sl = get_addr(&ss, tdata);
  napi_value out; CHECK(napi_create_uint32(env, send_batch(fd, bdata, blen, ddata, n, &ss, sl), &out));
  return out;
}

// ---- the overlay's underlay (src/transports/underlay.ts) --------------------------------------------

// Sets the socket option (level, name) of the fd argument to an int: 0, or -errno.
static napi_value SetIntOpt(napi_env env, napi_callback_info info, int level, int name, int value) {
  size_t argc = 1; napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd; CHECK(napi_get_value_int32(env, argv[0], &fd));
  int r = setsockopt(fd, level, name, &value, sizeof value) < 0 ? -errno : 0;
  napi_value out; CHECK(napi_create_int32(env, r, &out));
  return out;
}

// udpDf(fd) -> 0 or -errno: every datagram the UDP socket sends has DF set and none is fragmented
// (IP_PMTUDISC_PROBE: the device's MTU is the limit, a larger datagram is refused with EMSGSIZE), as
// the overlay's outer packets must not be.
static napi_value UdpDf(napi_env env, napi_callback_info info) { return SetIntOpt(env, info, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE); }

// udpGro(fd) -> 0 or -errno: the kernel may hand the UDP socket a run of one sender's equal datagrams
// as one message (UDP_GRO, Linux 5.0), which udpRecv with segs reads and tells apart.
static napi_value UdpGro(napi_env env, napi_callback_info info) { return SetIntOpt(env, info, SOL_UDP, UDP_GRO, 1); }

// udpGso(fd) -> 0 or -errno: whether the kernel has UDP GSO (UDP_SEGMENT, Linux 4.18), asked by
// setting the socket's default segment size to 0 (none), which is what it already is.
static napi_value UdpGso(napi_env env, napi_callback_info info) { return SetIntOpt(env, info, SOL_UDP, UDP_SEGMENT, 0); }

// udpSendOnly(fd) -> 0 or -errno: the UDP socket takes no datagram in from now on (a socket filter
// that accepts none, SO_ATTACH_FILTER), and what came before it is read and thrown away. The
// underlay's send sockets are bound to the PA on ports of their own that nothing of ours reads: a
// sender could otherwise fill each one's receive queue (rmem_default, 208 KiB here). The kernel
// drops what arrives for them and counts it in the socket's drops (/proc/net/udp).
static napi_value UdpSendOnly(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd; CHECK(napi_get_value_int32(env, argv[0], &fd));
  struct sock_filter none[] = { BPF_STMT(BPF_RET | BPF_K, 0) };
  struct sock_fprog prog = { .len = 1, .filter = none };
  int r = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0 ? -errno : 0;
  if (r == 0) while (recv(fd, NULL, 0, MSG_DONTWAIT | MSG_TRUNC) >= 0 || errno == EINTR) {}
  napi_value out; CHECK(napi_create_int32(env, r, &out));
  return out;
}

#define SEG_DESC 6

// udpSendSegments(base, desc, n, iovs) -> datagrams sent. desc holds 6 u32 a message: the UDP socket,
// the index of its first (offset, length) pair in iovs and how many pairs (1-64: its payload is
// those ranges of base, one after another), the segment size, the destination IPv4 address (its
// four bytes in memory order) and port. A segment size of 0 sends the payload as one datagram; any
// other sends it with UDP_SEGMENT (Linux 4.18, UDP GSO): the kernel cuts it into datagrams of that
// size, the last one shorter, with one pass through its stack for all of them. Consecutive
// messages on one socket go in one sendmmsg. A message with a range outside the buffer is dropped
// unread; one the socket refuses (EMSGSIZE, EHOSTUNREACH...) is skipped; EAGAIN (its buffer full)
// drops the rest. The caller counts the datagrams not sent.
#define SEG_IOVS 64
static napi_value UdpSendSegments(napi_env env, napi_callback_info info) {
  size_t argc = 4; napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t n; CHECK(napi_get_value_int32(env, argv[2], &n));
  napi_typedarray_type t, ti; size_t blen, dlen, ilen; void *bdata, *ddata, *idata; napi_value ab; size_t off;
  CHECK(napi_get_typedarray_info(env, argv[0], &t, &blen, &bdata, &ab, &off));
  CHECK(napi_get_typedarray_info(env, argv[1], &t, &dlen, &ddata, &ab, &off));
  CHECK(napi_get_typedarray_info(env, argv[3], &ti, &ilen, &idata, &ab, &off));
  if (t != napi_uint32_array || ti != napi_uint32_array || n < 0 || (size_t)n * SEG_DESC > dlen) { napi_throw_range_error(env, NULL, "udpSendSegments: bad batch"); return NULL; }
  uint8_t *base = bdata; const uint32_t *desc = ddata, *iovs = idata;
  struct mmsghdr m[MMSG_CHUNK]; struct iovec iov[MMSG_CHUNK][SEG_IOVS]; struct sockaddr_in to[MMSG_CHUNK];
  union { char buf[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } ctl[MMSG_CHUNK];
  uint32_t grams[MMSG_CHUNK];
  uint32_t sent = 0;
  int32_t i = 0;
  while (i < n) {
    int fd = (int)desc[i * SEG_DESC];
    unsigned k = 0;
    while (k < MMSG_CHUNK && i + (int32_t)k < n && (int)desc[(i + k) * SEG_DESC] == fd) {
      const uint32_t *d = desc + (i + k) * SEG_DESC;
      size_t first = d[1], count = d[2]; uint32_t seg = d[3];
      if (count == 0 || count > SEG_IOVS || first > ilen / 2 || count > ilen / 2 - first || seg > 0xffff) break;
      size_t len = 0; int bad = 0;
      for (size_t j = 0; j < count; j++) {
        size_t f = iovs[2 * (first + j)], l = iovs[2 * (first + j) + 1];
        if (f > blen || l > blen - f) { bad = 1; break; }
        iov[k][j].iov_base = base + f; iov[k][j].iov_len = l;
        len += l;
      }
      if (bad || len == 0) break;
      memset(&m[k], 0, sizeof m[k]);
      memset(&to[k], 0, sizeof to[k]);
      to[k].sin_family = AF_INET;
      memcpy(&to[k].sin_addr, &d[4], 4);
      to[k].sin_port = htons((uint16_t)d[5]);
      m[k].msg_hdr.msg_iov = iov[k]; m[k].msg_hdr.msg_iovlen = count;
      m[k].msg_hdr.msg_name = &to[k]; m[k].msg_hdr.msg_namelen = sizeof to[k];
      grams[k] = 1;
      if (seg != 0 && len > seg) {
        m[k].msg_hdr.msg_control = ctl[k].buf; m[k].msg_hdr.msg_controllen = sizeof ctl[k].buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m[k].msg_hdr);
        c->cmsg_level = SOL_UDP; c->cmsg_type = UDP_SEGMENT; c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t s16 = (uint16_t)seg; memcpy(CMSG_DATA(c), &s16, sizeof s16);
        grams[k] = (uint32_t)((len + seg - 1) / seg);
      }
      k++;
    }
    if (k == 0) { i++; continue; }   // unreadable: dropped, never read
    int r = send_some(fd, m, k);
    if (r < 0) break;                // the socket's buffer is full: the rest is dropped
    if (r == 0) { i++; continue; }   // this one is refused: dropped
    for (int j = 0; j < r; j++) sent += grams[j];
    i += r;
  }
  napi_value out; CHECK(napi_create_uint32(env, sent, &out));
  return out;
}

// ---- the I/O worker's rings (src/worker/ring.ts) ----------------------------------------------------

// copy(dst, dstOffset, src) copies all of src into dst at dstOffset with memcpy. The rings live in a
// SharedArrayBuffer, and V8 copies into or out of one (TypedArray.prototype.set) a word at a time with
// relaxed atomics, three to four times slower than memcpy (a fifth of the switch thread's time with
// 64 KiB super-frames). The bytes of a record belong to one side at a time (the ring's head and tail
// say which), so a plain copy is what the ring needs. A range outside dst throws, nothing copied.
static napi_value Copy(napi_env env, napi_callback_info info) {
  size_t argc = 3; napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int64_t at; CHECK(napi_get_value_int64(env, argv[1], &at));
  napi_typedarray_type t; size_t dlen, slen; void *ddata, *sdata; napi_value ab; size_t off;
  CHECK(napi_get_typedarray_info(env, argv[0], &t, &dlen, &ddata, &ab, &off));
  if (t != napi_uint8_array) { napi_throw_type_error(env, NULL, "copy: dst must be a Uint8Array"); return NULL; }
  CHECK(napi_get_typedarray_info(env, argv[2], &t, &slen, &sdata, &ab, &off));
  if (t != napi_uint8_array) { napi_throw_type_error(env, NULL, "copy: src must be a Uint8Array"); return NULL; }
  if (at < 0 || (uint64_t)at > dlen || slen > dlen - (size_t)at) { napi_throw_range_error(env, NULL, "copy: out of range"); return NULL; }
  memcpy((uint8_t *)ddata + at, sdata, slen);
  return NULL;
}

// hugePages(mem) -> 0 or an errno: madvise(MADV_HUGEPAGE) over the whole pages of a Uint8Array's bytes
// (the dataplane's WebAssembly memory, src/dataplane.ts). Advice only, on this process's own memory:
// pages not yet touched are then backed by 2 MiB pages where the kernel has them, so a table of
// hundreds of MiB is covered by a few hundred TLB entries instead of tens of thousands. Linux's THP
// setting "madvise" (Debian's default) gives huge pages only to ranges advised this way.
static napi_value HugePages(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_typedarray_type t; size_t len; void *data; napi_value ab; size_t off;
  CHECK(napi_get_typedarray_info(env, argv[0], &t, &len, &data, &ab, &off));
  if (t != napi_uint8_array) { napi_throw_type_error(env, NULL, "hugePages: a Uint8Array"); return NULL; }
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = ((uintptr_t)data + page - 1) & ~(page - 1), end = ((uintptr_t)data + len) & ~(page - 1);
  int err = 0;
#ifdef MADV_HUGEPAGE
  if (end > start && madvise((void *)start, end - start, MADV_HUGEPAGE) != 0) err = errno;
#else
  err = ENOSYS;
#endif
  napi_value out; CHECK(napi_create_int32(env, err, &out));
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor d[] = {
    { "open", 0, Open, 0, 0, 0, napi_default, 0 },
    { "read", 0, Read, 0, 0, 0, napi_default, 0 },
    { "write", 0, Write, 0, 0, 0, napi_default, 0 },
    { "poll", 0, Poll, 0, 0, 0, napi_default, 0 },
    { "stop", 0, Stop, 0, 0, 0, napi_default, 0 },
    { "close", 0, Close, 0, 0, 0, napi_default, 0 },
    { "udpOpen", 0, UdpOpen, 0, 0, 0, napi_default, 0 },
    { "udpRecv", 0, UdpRecv, 0, 0, 0, napi_default, 0 },
    { "udpSend", 0, UdpSend, 0, 0, 0, napi_default, 0 },
    { "udpDf", 0, UdpDf, 0, 0, 0, napi_default, 0 },
    { "udpGro", 0, UdpGro, 0, 0, 0, napi_default, 0 },
    { "udpGso", 0, UdpGso, 0, 0, 0, napi_default, 0 },
    { "udpSendSegments", 0, UdpSendSegments, 0, 0, 0, napi_default, 0 },
    { "udpSendOnly", 0, UdpSendOnly, 0, 0, 0, napi_default, 0 },
    { "pingOpen", 0, PingOpen, 0, 0, 0, napi_default, 0 },
    { "sndBuf", 0, SndBuf, 0, 0, 0, napi_default, 0 },
    { "rcvBuf", 0, RcvBuf, 0, 0, 0, napi_default, 0 },
    { "pingSend", 0, PingSend, 0, 0, 0, napi_default, 0 },
    { "pingRecv", 0, PingRecv, 0, 0, 0, napi_default, 0 },
    { "copy", 0, Copy, 0, 0, 0, napi_default, 0 },
    { "hugePages", 0, HugePages, 0, 0, 0, napi_default, 0 },
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
