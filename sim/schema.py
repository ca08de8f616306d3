"""The SIM channel rules (sim/README.md, "Channel definitions"): which FeatureSpec features play which role,
checked once, with errors naming the channel and feature.

  label                 one feature, bool or 0/1 integer
  user_features         any number of categorical features (ids 0..cardinality)
  target_item_features  F >= 1 categorical features (item id first, then e.g. category)
  positive_history      F features with `dimensions: [T]`, LEFT-padded with 0, newest at T-1
  negative_history      F features with `dimensions: [T]`, aligned with positive_history
Feature k of the three item channels shares embedding table k, so the channels must list the same number
of features, in the same order, with equal cardinalities.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.feature_spec import FeatureSpec, FeatureSpecError

CHANNELS = ("label", "user_features", "target_item_features", "positive_history", "negative_history")
MAX_ID = 2**31 - 2  # ids are stored as int32 and offset into one table per channel


@dataclass(frozen=True)
class SimSchema:
    """Feature names per role, resolved and checked once."""

    label: str
    user: tuple[str, ...]
    target: tuple[str, ...]
    positive: tuple[str, ...]
    negative: tuple[str, ...]
    history_length: int
    user_cardinalities: tuple[int, ...]
    item_cardinalities: tuple[int, ...]


def read_schema(spec: FeatureSpec) -> SimSchema:
    """Check the SIM channel rules (README 'Channel definitions') with errors naming the channel/feature."""
    where = spec.yaml_path or spec.base_directory

    def fail(message: str) -> None:
        raise FeatureSpecError(f"{where}: {message}")

    if missing := [c for c in CHANNELS if c not in spec.channel_spec]:
        fail(f"channel_spec lacks {missing}; a SIM dataset needs the channels {list(CHANNELS)}")
    names = {c: tuple(spec.channel(c)) for c in CHANNELS}
    if len(names["label"]) != 1:
        fail(f"channel_spec.label must hold exactly one feature, got {list(names['label'])}")
    items = names["target_item_features"]
    if not items:
        fail("channel_spec.target_item_features is empty; it needs at least the item id")
    for c in ("positive_history", "negative_history"):
        if len(names[c]) != len(items):
            fail(f"channel_spec.{c} has {len(names[c])} features {list(names[c])} but target_item_features has "
                 f"{len(items)} {list(items)}: the three item channels need the same features in the same "
                 "order (feature k of each shares embedding table k)")  # fmt: skip
    lengths = set()
    for c in CHANNELS:
        for name in names[c]:
            entry, sequence = spec.feature_spec[name], c.endswith("_history")
            dims = entry.get("dimensions")
            if sequence:
                if not (isinstance(dims, list) and len(dims) == 1):
                    fail(f"feature_spec.{name}.dimensions must be [T] (the history length) for a feature of "
                         f"channel {c}, got {dims!r}")  # fmt: skip
                lengths.add(dims[0])
            elif dims not in (None, [1]):
                fail(f"feature_spec.{name} (channel {c}) must be a scalar feature, got dimensions {dims!r}")
            if "dtype" in entry:
                kind = spec.dtype(name).kind
                allowed = "biu" if c == "label" else "iu"
                if kind not in allowed:
                    fail(f"feature_spec.{name}.dtype is {entry['dtype']}; channel {c} needs "
                         f"{'bool or integer' if c == 'label' else 'integer ids'}")  # fmt: skip
    if len(lengths) != 1:
        fail(f"positive_history and negative_history features must share one length, got {sorted(lengths)}")
    cards = {name: spec.cardinality(name) for c in CHANNELS[1:] for name in names[c]}
    if too_big := [n for n, v in cards.items() if v > MAX_ID]:
        fail(f"cardinalities of {too_big} exceed the int32 id range")
    for k, name in enumerate(items):
        trio = [cards[name], cards[names["positive_history"][k]], cards[names["negative_history"][k]]]
        if len(set(trio)) != 1:
            fail(f"item feature {k} ({name}, {names['positive_history'][k]}, {names['negative_history'][k]}) "
                 f"shares one embedding table but has cardinalities {trio}")  # fmt: skip
    return SimSchema(
        label=names["label"][0], user=names["user_features"], target=items,
        positive=names["positive_history"], negative=names["negative_history"],
        history_length=lengths.pop(), user_cardinalities=tuple(cards[n] for n in names["user_features"]),
        item_cardinalities=tuple(cards[n] for n in items),
    )  # fmt: skip
