"""HTTP/2 over TLS (ALPN h2) with the `h2` library: connection.py drives the protocol and its
defences, stream.py lets one stream stand in for the HTTP/1.1 connection under a Request."""
