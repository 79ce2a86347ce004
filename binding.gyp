{
  "targets": [
    {
      "target_name": "netplane_tap",
      "sources": ["native/tap.c"],
      "cflags": ["-O2", "-Wall"],
      "conditions": [["OS!='linux'", { "type": "none" }]]
    }
  ]
}
