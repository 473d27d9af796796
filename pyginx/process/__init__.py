"""The process model (nginx's src/os/unix and ngx_cycle): the master and its signals, the workers and
the cache processes it forks and supervises, single-process mode, the cycle of listeners, logs and
shared zones a configuration needs, the pid file and live binary upgrade. Nothing under http/,
handlers/ or modules/ imports from here: requests know nothing of processes."""
