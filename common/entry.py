"""The opening and closing every entry point's main shares, once its config dataclass is parsed.

    cfg = config.parse(EvaluateConfig, argv, prog=...)
    env = entry.start(cfg)                       # kernel policy (logged), process group, device
    log = entry.open_log(cfg, env, METRICS)      # DLLL log with the parameters record
    ...
    return entry.finish(env, log, summary)       # summary record, log closed, process group left

Config fields read by name when present: kernels, device, log_path. A train.py opens its log after its
resume checks (open_log(..., append=True) when resuming) so a refused run leaves the old log untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import config, distributed
from common.kernels import set_policy
from common.logging import JsonLogger


def start(cfg: Any) -> distributed.DistEnv:
    set_policy(getattr(cfg, "kernels", "auto"))
    return distributed.init(getattr(cfg, "device", "auto"))


def open_log(
    cfg: Any,
    env: distributed.DistEnv,
    metadata: dict[str, dict[str, Any]],
    *,
    append: bool = False,
    path: Path | str | None = None,
    **extra: Any,
) -> JsonLogger:
    """path: the log file when it is not cfg.log_path as given (DLRM resolves it under --output_dir); the
    PARAMETER record then names the file actually written."""
    path = path if path is not None else getattr(cfg, "log_path", None)
    log = JsonLogger(path, enabled=env.is_main, metadata=metadata, append=append)
    params = {**config.to_dict(cfg), "world_size": env.world_size, "device": str(env.device), **extra}
    if "log_path" in params:
        params["log_path"] = str(path) if path is not None else None
    log.parameters(params)
    return log


def finish(env: distributed.DistEnv, log: JsonLogger, summary: dict[str, Any]) -> dict[str, Any]:
    """Write the summary, close the log, leave the process group if start() created it."""
    log.summary(summary)
    log.close()
    distributed.shutdown(env)
    return summary
