"""Tiny standalone servers compared with Pushwire: `python -m bench.peers.<name> --port P [--deflate]`.

Each accepts receiving clients on any path and one control connection on `/ctl` (Socket.IO: the
`pub` event) whose text `"<n>|<payload>"` makes it broadcast `payload` n times to every client.
"""
