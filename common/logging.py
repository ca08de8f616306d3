"""DLLogger-compatible JSON-lines logging (NVIDIA's `dllogger` is not on PyPI).

File lines are `DLLL {json}`, exactly as dllogger's JSONStreamBackend writes them, so NVIDIA's parsing and
plotting scripts keep working:
  METADATA  {"timestamp", "datetime", "elapsedtime", "type": "METADATA", "metric", "metadata": {unit, format}}
  LOG       {"timestamp", "datetime", "elapsedtime", "type": "LOG", "step", "data"}
with step "PARAMETER" for the resolved config, [epoch] or [epoch, iteration] per step, and [] for the
final summary. A readable line per record goes to stdout. Disabled loggers (non-zero ranks) do nothing.
"""

from __future__ import annotations

import io
import json
import math
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from common.errors import InputError, UsageError

Step = str | tuple[int, ...] | list[int]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # 0-dim tensors / numpy scalars
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; dllogger readers see a string instead of a parse error
    return value


class JsonLogger:
    """Args:
    path: the DLLL log file (overwritten, like dllogger's "w" mode); None or '' for stdout only.
    append: continue the file instead (a resumed run keeps its earlier records: its log holds the whole run).
    enabled: False on non-zero ranks: every call is then a no-op.
    metadata: metric -> {"unit": ..., "format": ":.5f"}; written first, and used to format stdout.
    stdout: where the readable lines go.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        enabled: bool = True,
        metadata: dict[str, dict[str, Any]] | None = None,
        stdout: IO[str] | None = None,
        append: bool = False,
    ) -> None:
        self.enabled = enabled
        self.metadata = dict(metadata or {})
        self._start = time.time()
        self._out = stdout if stdout is not None else sys.stdout
        self._file: IO[str] | None = None
        if not enabled:
            return
        if path is not None and str(path) not in ("", "."):  # `--log_path ''` (Path('') is '.'): no file
            if Path(path).is_dir():
                raise UsageError(
                    f"--log_path {path} is a directory; give a file name, e.g. {Path(path) / 'log.json'}"
                )
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a" if append else "w", buffering=1)  # noqa: SIM115 - lives as long as the logger
        for metric, meta in self.metadata.items():
            self._write({"type": "METADATA", "metric": metric, "metadata": meta})

    def _write(self, record: dict[str, Any]) -> None:
        now = time.time()
        stamp = {
            "timestamp": f"{now}",
            "datetime": datetime.fromtimestamp(now).strftime("%Y-%m-%d %H:%M:%S.%f"),
            "elapsedtime": f"{now - self._start}",
        }
        if self._file is not None:
            self._file.write("DLLL " + json.dumps({**stamp, **_jsonable(record)}) + "\n")

    def _format(self, key: str, value: Any) -> str:
        meta = self.metadata.get(key, {})
        fmt = meta.get("format")
        text = f"{value:{fmt[1:]}}" if fmt and isinstance(value, (int, float)) else str(value)
        unit = meta.get("unit")
        return f"{key} : {text}" + (f" {unit}" if unit else "")

    def log(self, step: Step, data: dict[str, Any]) -> None:
        if not self.enabled:
            return
        data = _jsonable(data)
        step = step if isinstance(step, str) else list(step)
        self._write({"type": "LOG", "step": step, "data": data})
        shown = step if isinstance(step, str) else tuple(step)
        when = datetime.now().strftime("%Y-%m-%dT%H:%M:%S.%f")
        line = (
            " ".join(self._format(k, v) for k, v in data.items()) if step != "PARAMETER" else json.dumps(data)
        )
        print(f"DLL {when} - {shown} {line}", file=self._out, flush=True)

    def parameters(self, config: dict[str, Any]) -> None:
        """The first LOG record: the resolved config (and derived values such as world_size)."""
        self.log("PARAMETER", config)

    def summary(self, data: dict[str, Any]) -> None:
        """The final record, step []; NVIDIA's QA scripts read the last line as the run's result."""
        self.log((), data)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Parse a DLLL file back into records (lines without the prefix are skipped, as dllogger readers do).

    A cut-off last line (the run was killed mid-write) is skipped with a warning naming the file and line;
    an unreadable line anywhere else is an error naming them.
    """
    lines = Path(path).read_text(errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.startswith("DLLL "):
            continue
        try:
            records.append(json.loads(line[5:]))
        except json.JSONDecodeError as e:
            if number == len(lines):
                warnings.warn(f"{path}:{number}: skipping a cut-off last record ({e.msg})", stacklevel=2)
                continue
            raise InputError(f"{path}:{number}: not a valid DLLL record ({e.msg})") from None
    return records


def log_run(path: str | Path | None, parameters: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """The DLLogger log of a one-shot command (preparation, transcode, conversion, export, demo): the
        PARAMETER record and the [] summary in `path`. Nothing when path is None: these commands already print
        their own one-line summary, so the readable DLL lines are not repeated on stdout. `parameters` may be an
    argparse Namespace. Returns `summary`, so a command ends with `return log_run(args.log_path, args, result)`."""
    if path is not None:
        log = JsonLogger(path, stdout=io.StringIO())
        log.parameters(dict(vars(parameters)) if hasattr(parameters, "__dict__") else dict(parameters))
        log.summary(summary)
        log.close()
    return summary
