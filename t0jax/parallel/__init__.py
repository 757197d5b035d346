"""Device meshes and sharding rules, multi-process start-up, and per-host data plumbing."""
