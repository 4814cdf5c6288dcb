"""Speaker-disjoint train/dev/test splitting."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from asr.config_errors import ConfigError, check
from asr.data.manifest import Utterance


def split_by_speaker(
    utterances: Sequence[Utterance],
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    test_speakers: Sequence[str] | None = None,
    dev_speakers: Sequence[str] | None = None,
) -> dict[str, list[Utterance]]:
    """Split so that no speaker occurs in two of train/dev/test.

    Speakers named in ``test_speakers``/``dev_speakers`` go to those splits; the remaining
    speakers are shuffled with ``seed`` and assigned until each split holds at least its
    fraction of the utterances. Utterances without a speaker are refused: a split that cannot
    promise disjointness would silently inflate dev/test accuracy.

    Returns:
        ``{"train": [...], "dev": [...], "test": [...]}`` in input order within each split.
    """
    check(0 <= dev_fraction < 1, "dev_fraction", "in [0, 1)", dev_fraction)
    check(0 <= test_fraction < 1, "test_fraction", "in [0, 1)", test_fraction)
    check(dev_fraction + test_fraction < 1, "dev_fraction + test_fraction", "< 1",
          dev_fraction + test_fraction)
    by_speaker: dict[str, list[int]] = defaultdict(list)
    for i, utt in enumerate(utterances):
        if utt.speaker is None:
            raise ConfigError(f"utterance {utt.utt_id or utt.audio_filepath} has no speaker; "
                              "a speaker-disjoint split needs one for every utterance")
        by_speaker[utt.speaker].append(i)
    fixed = {"test": list(test_speakers or []), "dev": list(dev_speakers or [])}
    for name, speakers in fixed.items():
        unknown = sorted(set(speakers) - set(by_speaker))
        if unknown:
            raise ConfigError(f"{name}_speakers: unknown speaker(s) {unknown}")
    assigned = {s: name for name, speakers in fixed.items() for s in speakers}
    free = sorted(s for s in by_speaker if s not in assigned)
    random.Random(seed).shuffle(free)
    total = len(utterances)
    counts = {name: sum(len(by_speaker[s]) for s in fixed[name]) for name in ("test", "dev")}
    targets = {"test": test_fraction * total, "dev": dev_fraction * total}
    for name in ("test", "dev"):
        while free and counts[name] < targets[name]:
            speaker = free.pop()
            assigned[speaker] = name
            counts[name] += len(by_speaker[speaker])
    splits: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for utt in utterances:
        splits[assigned.get(utt.speaker, "train")].append(utt)  # type: ignore[arg-type]
    return splits


def split_by_field(
    utterances: Sequence[Utterance],
    field: str,
    test_values: Sequence[str],
    dev_values: Sequence[str] = (),
) -> dict[str, list[Utterance]]:
    """Split by the value of a manifest field (e.g. FSDD's ``take``: takes 0-4 are test).

    Values are compared as strings, so ``take=0`` matches the integer 0 in the manifest.
    """
    test, dev = {str(v) for v in test_values}, {str(v) for v in dev_values}
    if test & dev:
        raise ConfigError(f"{field}: values {sorted(test & dev)} are in both test and dev")
    splits: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    for utt in utterances:
        data = utt.to_dict()
        if field not in data:
            raise ConfigError(f"utterance {utt.utt_id or utt.audio_filepath} has no field "
                              f"{field!r} to split by")
        value = str(data[field])
        splits["test" if value in test else "dev" if value in dev else "train"].append(utt)
    return splits


def parse_where(expr: str) -> tuple[str, list[str]]:
    """``"take=0-4"`` or ``"speaker=a,b"`` -> (field, values); ``a-b`` is an integer range."""
    field, sep, values = expr.partition("=")
    if not sep or not field or not values:
        raise ConfigError(f"expected FIELD=V1,V2 or FIELD=LOW-HIGH, got {expr!r}")
    out: list[str] = []
    for part in values.split(","):
        low, dash, high = part.partition("-")
        if dash and low.isdigit() and high.isdigit():
            out += [str(v) for v in range(int(low), int(high) + 1)]
        else:
            out.append(part)
    return field, out
