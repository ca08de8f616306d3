"""The one way every entry point starts and ends: `if __name__ == "__main__": cli.run(main)`.

main(argv) returns a metrics dict and raises `common.errors.RecipeError` for anything the user can fix; tests
call main directly and catch the typed error. This wrapper is the only code that prints such an error and
picks the exit status, and the only place that decides how a worker process ends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from common.errors import RecipeError
from common.output_dir import no_space_message


def run(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    """Run main(argv or sys.argv[1:]) and exit: 0 on success, `error.exit_code` after one `error: ...` line
    on stderr for a RecipeError, 1 for a full disk (ENOSPC/EDQUOT, named), 130 on Ctrl-C. Other exceptions keep
    their traceback: they are bugs, and the traceback is what a bug report needs."""
    args = strip_local_rank(sys.argv[1:] if argv is None else list(argv))
    code, message = 0, None
    try:
        main(args)
    except RecipeError as e:
        code, message = e.exit_code, f"error: {e}"
    except OSError as e:
        if (text := no_space_message(e, e.filename or "?")) is None:
            raise
        code, message = 1, f"error: {text}"
    except KeyboardInterrupt:
        code, message = 130, "interrupted"
    _exit(code, message)  # outside the except blocks: the error's frames (and their buffers) are released


def _exit(code: int, message: str | None) -> None:
    """Print, flush and end the process. A gloo worker skips interpreter finalisation (os._exit).

    Why (gloo only): gloo's worker threads release finished work objects, and with them the tensors of
    collectives, asynchronously. If that happens while Python finalises, the thread needs the GIL for the
    tensors' Python objects and dies with `terminate called without an active exception` (SIGABRT), so
    torchrun reported a failed run after all output and checkpoints were written: ~1 in 12 two-rank CPU
    runs (gdb: ProcessGroupGloo::runLoop -> ~AsyncBarrierWork -> ~AsyncAllreduceWork -> decref_pyobject ->
    take_gil -> pthread_exit). Extra barriers before destroy_process_group did not help; not finalising
    does. NCCL and single-process runs finalise normally.
    """
    if message is not None:
        print(message, file=sys.stderr)
    dist = sys.modules.get("common.distributed")  # not imported = no process group (and torch stays unloaded)
    if dist is not None and dist.used_backend() == "gloo":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def strip_local_rank(argv: list[str]) -> list[str]:
    """Remove `--local-rank=N` / `--local_rank N` (what torch.distributed.launch without --use-env appends) and
    put N in LOCAL_RANK when the launcher did not, so entry points with their own argparse accept it too."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in ("--local-rank", "--local_rank"):
            if not eq and i + 1 < len(argv):
                value, i = argv[i + 1], i + 1
            os.environ.setdefault("LOCAL_RANK", value)
        else:
            out.append(arg)
        i += 1
    return out
