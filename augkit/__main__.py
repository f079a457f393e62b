"""``python -m augkit`` runs the command line."""

from augkit.cli.main import main

if __name__ == "__main__":
    main()
