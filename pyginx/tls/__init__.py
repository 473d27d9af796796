"""TLS for pyginx (issue 13): SSL contexts built from the configuration (contexts.py), the SNI choice
of the server (sni.py), the pure option decisions (options.py), the ssl variables (variables.py) and
the accept path that tells TLS from plain HTTP on a TLS port (acceptor.py).

Contexts are built by the master before it forks (pyginx/process/cycle.py), so every worker holds the same
OpenSSL context and with it the same session-ticket key: a ticket issued by one worker resumes in any
other. A reload builds new contexts, which is the ticket-key rotation. This package imports nothing of
the HTTP layer.
"""
