"""pyginx: nginx's core re-made in Python (pre-forking, event-driven HTTP/1.1 server)."""

__version__ = "0.1.0"
NAME = "pyginx"
