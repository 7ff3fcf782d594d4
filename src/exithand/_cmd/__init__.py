"""One module per ``exithand`` subcommand; each has ``register(subparsers)``."""
