"""The `pushwire` command: run an instance, migrate, and manage tenants, apps, keys and users."""
