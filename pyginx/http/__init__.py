"""The HTTP/1.1 core: parsing, routing, connections, responses (runs inside a worker)."""
