// netplane's optional native TAP attach for Linux: opens a TAP device and moves frames between it and
// JavaScript buffers without socat and a UDP socket in between (two system calls a frame fewer, and
// no extra process). JavaScript is told when the device is readable (a libuv poll) and then drains it
// in one call, many frames at a time, into one buffer; writes are one write() per frame.
// Built by node-gyp when a compiler is there; netplane works without it (src/transports/tap.ts).
#include <node_api.h>
#include <uv.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/if.h>
#include <linux/if_tun.h>

typedef struct { uv_poll_t poll; napi_env env; napi_ref cb; int fd; int active; } Poller;

#define CHECK(call) do { if ((call) != napi_ok) { napi_throw_error(env, NULL, #call " failed"); return NULL; } } while (0)

static napi_value throw_errno(napi_env env, const char *what) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

// open(name) -> fd: a TAP device without packet information, non-blocking.
static napi_value Open(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ] = {0}; size_t len;
  CHECK(napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len));
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open /dev/net/tun");
  struct ifreq ifr; memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) { int e = errno; close(fd); errno = e; return throw_errno(env, "TUNSETIFF"); }
  napi_value out; CHECK(napi_create_int32(env, fd, &out));
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

// write(fd, frame) -> bytes written (0 when the device's queue is full: the frame is dropped).
static napi_value Write(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd; CHECK(napi_get_value_int32(env, argv[0], &fd));
  napi_typedarray_type t; size_t len; void *data; napi_value ab; size_t off;
  CHECK(napi_get_typedarray_info(env, argv[1], &t, &len, &data, &ab, &off));
  ssize_t r = write(fd, data, len);
  napi_value out; CHECK(napi_create_int32(env, r < 0 ? 0 : (int32_t)r, &out));
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

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor d[] = {
    { "open", 0, Open, 0, 0, 0, napi_default, 0 },
    { "read", 0, Read, 0, 0, 0, napi_default, 0 },
    { "write", 0, Write, 0, 0, 0, napi_default, 0 },
    { "poll", 0, Poll, 0, 0, 0, napi_default, 0 },
    { "stop", 0, Stop, 0, 0, 0, napi_default, 0 },
    { "close", 0, Close, 0, 0, 0, napi_default, 0 },
  };
  napi_define_properties(env, exports, sizeof d / sizeof d[0], d);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
