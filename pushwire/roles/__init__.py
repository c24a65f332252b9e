"""The roles an instance can play, each built and started on its own.

- `api`: the signed push and read API, tenancy and accounts (the console's services);
- `realtime`: client connections, the router that feeds them from the bus, presence, liveness;
- `relay`: the outbox relay and the retention sweep (`pushwire relay` runs it as its own process).

`Shared` holds what the roles of one process share. `pushwire.runtime.Runtime` composes them
into a serving instance; `pushwire run --no-relay` leaves the relay to another process.
"""
