"""Subcommands of `lp-prune`. Each module defines `HELP`, `add_arguments(parser)` and
`execute(namespace) -> int`; cli.py lists them in COMMANDS. Heavy imports stay inside execute()."""
