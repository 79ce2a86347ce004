# The optional native TAP helper (Linux). It lives here, not at the package root, so that npm never
# adds its implicit `install: node-gyp rebuild` (which starts by deleting the package's build/, where
# the WebAssembly modules and the bundled SDK are): scripts/native.mjs builds it with
# `node-gyp --directory native`, into native/build/Release/netplane_tap.node.
{
  "targets": [
    {
      "target_name": "netplane_tap",
      "sources": ["tap.c"],
      "cflags": ["-O2", "-Wall"],
      "conditions": [["OS!='linux'", { "type": "none" }]]
    }
  ]
}
