"""Instance registry, distributed locks and watched global config: local (single node) or etcd."""
