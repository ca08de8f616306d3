"""The errors a user can act on. Entry points raise them; `common.cli.run` turns them into one line.

Why one family: before, each main called sys.exit(...) from wherever it noticed the problem, so a test had
to catch SystemExit and parse its text, and a library function could end the process. Now library code
raises, main lets it pass, and the CLI wrapper is the only place that prints and picks the exit status.
The older per-module errors (ConfigError, FeatureSpecError, CheckpointError, ...) derive from these.
"""

from __future__ import annotations


class RecipeError(Exception):
    """Printed as `error: <message>`; the process exits with `exit_code` (2: the input, flags or files are
    wrong and nothing ran; 1: the run itself failed, e.g. diverged)."""

    exit_code = 2


class UsageError(RecipeError, ValueError):
    """Flags that cannot work together or with this machine (fix the command line)."""


class InputError(RecipeError, ValueError):
    """A file or dataset given to the command is missing or malformed (the message names it)."""


class RunError(RecipeError):
    """The run started and failed: non-finite loss or weights, a full disk, a peer rank gone."""

    exit_code = 1
