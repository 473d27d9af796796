"""Content handlers: static files (with index, try_files, autoindex, gzip_static) and the proxy."""
