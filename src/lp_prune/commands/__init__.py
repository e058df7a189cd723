"""Subcommands of `lp-prune`; cli.py lists them in COMMANDS. Each module defines `HELP`,
`add_arguments(parser)` and `execute(options) -> int`. A module with an `OPTIONS` dataclass gets that
dataclass (its fields are the flags, their docstrings the help); `run` and `estimate` get the parsed
namespace (RunConfig's keys plus their own flags). Heavy imports stay inside execute()."""
