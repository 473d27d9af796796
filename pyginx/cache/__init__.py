"""The proxy cache: nginx's ngx_http_file_cache, split into pure decisions and I/O.

    policy.py    what an upstream response's headers mean for caching (Cache-Control, Expires,
                 X-Accel-Expires, Set-Cookie, Vary, proxy_cache_valid), use_stale, predicates  [pure]
    key.py       the cache key's md5, the file's path under levels=, Vary variants              [pure]
    fileformat.py  the cache file's header: encode, decode, validate                              [pure]
    index.py     the keys zone (pyginx.zone table): nodes, uses, the update lock, sizes, LRU
    store.py     cache files on disk: read, write to a temp file and rename, delete
    processes.py the cache manager and cache loader process bodies (forked by the master)
The HTTP side (lookup before proxying, answering from the cache, teeing a response into a file) is
pyginx/handlers/proxy_cache.py.
"""
