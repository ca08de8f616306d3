"""Evaluate a trained NeuMF checkpoint: HR@K and NDCG@K over the leave-one-out test series.

  python -m ncf.evaluate --data /data/cache/ml-20m --checkpoint runs/ncf/best.pt
  torchrun --nproc_per_node=8 -m ncf.evaluate --data /data/cache/ml-20m --checkpoint runs/ncf/best.pt

The model is rebuilt from the checkpoint alone (its stored sizes); no model flags are needed.
"""

from __future__ import annotations

from common import cli, config, entry, throughput
from common.distributed import DistEnv
from ncf import checkpoints as ncf_checkpoints
from ncf import data as ncf_data
from ncf.config import EvaluateConfig
from ncf.model import NeuMF
from ncf.quantized_model import QuantizedNeuMF
from ncf.ranking import evaluate, popularity_scores, ranking_metrics

METRICS = {"hr@10": {"format": ":.5f"}, "ndcg@10": {"format": ":.5f"}, "validation_loss": {"format": ":.5f"},
           "eval_throughput": {"unit": "samples/s", "format": ":.3e"}}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, float]:
    cfg = config.parse(
        EvaluateConfig, argv, prog="python -m ncf.evaluate", description=__doc__.split("\n\n")[0]
    )
    env = entry.start(cfg)
    data, model = load(cfg, env)  # before the log: a refused run writes nothing
    log = entry.open_log(cfg, env, METRICS)
    clock = throughput.Clock(env.device)
    if model is not None:
        result = evaluate(model, data, env, cfg.topk, cfg.valid_batch_size)
    else:
        hr, ndcg = ranking_metrics(popularity_scores(data, env), data, env, cfg.topk)
        result = {f"hr@{cfg.topk}": hr, f"ndcg@{cfg.topk}": ndcg}
    result["eval_throughput"] = data.test_items.numel() / clock.lap()
    return entry.finish(env, log, result)


def load(cfg: EvaluateConfig, env: DistEnv) -> tuple[ncf_data.NcfData, NeuMF | QuantizedNeuMF | None]:
    """The dataset and the checkpoint's model (None for --baseline), checked to belong together; raises an
    InputError naming the file otherwise."""
    data = ncf_data.load(cfg.data, cfg.feature_spec_file, env.device)
    if cfg.checkpoint is None:
        return data, None
    model, ckpt = ncf_checkpoints.load_model(cfg.checkpoint, env.device)
    ncf_checkpoints.check_dataset(cfg.checkpoint, ckpt, data, cfg.data)
    return data, model


if __name__ == "__main__":
    cli.run(main)
