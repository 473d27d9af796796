"""Upstream servers: balancing and passive health (balancer), keep-alive connections (pool), active
health checks (health), the upstream response parser (response) and retry decisions (retry).

Nothing here knows the client connection: the proxy handler (pyginx/handlers/proxy.py) joins the two.
"""
