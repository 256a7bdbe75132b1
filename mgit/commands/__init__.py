"""Click subcommands: parse, call :mod:`mgit.repo`, render. No logic, no file I/O of their own."""
