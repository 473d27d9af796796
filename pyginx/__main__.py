"""`python -m pyginx` is the same program as the `pyginx` command."""

from pyginx.cli import main

if __name__ == "__main__":
    main()
