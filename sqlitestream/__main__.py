"""``python -m sqlitestream``: the command-line interface."""

from sqlitestream.cli.main import main

if __name__ == "__main__":
    main()
