"""``python -m server``: the same as the ``prompt-ls`` console script."""

from server.cli import main

if __name__ == "__main__":
    main()
