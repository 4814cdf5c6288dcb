"""Output formats of decoded utterances (``asr-decode --output-format``).

- ``tsv``: ``path<TAB>text`` (the default).
- ``jsonl``: one JSON object per file: path, utt_id, text, words (start/end seconds and, from
  the greedy decoder, a confidence), confidence, duration and decode_seconds.
- ``kaldi``: ``utt_id text`` (a Kaldi ``text`` file).
- ``trn``: ``text (utt_id)`` (sclite's transcript format).
- ``ctm``: ``utt_id 1 start duration word confidence``, a line per word (sclite's time-marked
  conversation format; channel 1). Times come from the CTC alignment, in seconds, clipped to
  the file's duration; the confidence is the word's where the decoder gives one (greedy), else
  the utterance's.
"""

from __future__ import annotations

import json

from asr.decode.hypothesis import Hypothesis

OUTPUT_FORMATS = ("tsv", "jsonl", "kaldi", "trn", "ctm")


def format_hypothesis(fmt: str, path: str, utt_id: str, hyp: Hypothesis, duration: float,
                      decode_seconds: float) -> list[str]:
    """The lines (without newlines) that one decoded file contributes in format ``fmt``."""
    text = hyp.text
    if fmt == "tsv":
        return [f"{path}\t{text}"]
    if fmt == "jsonl":
        record = {"path": path, "utt_id": utt_id, **hyp.to_dict(),
                  "duration": round(duration, 3), "decode_seconds": round(decode_seconds, 4)}
        return [json.dumps(record)]
    if fmt == "kaldi":
        return [f"{utt_id} {text}" if text else utt_id]
    if fmt == "trn":
        return [f"{text} ({utt_id})" if text else f"({utt_id})"]
    if fmt == "ctm":
        lines = []
        for w in hyp.words:
            # a causal model can emit a word in its tail frames: clip it to the audio
            start = min(max(w.start, 0.0), duration)
            end = min(max(w.end, start), duration)
            confidence = w.confidence if w.confidence is not None else hyp.confidence
            lines.append(f"{utt_id} 1 {start:.3f} {end - start:.3f} {w.word} "
                         f"{confidence:.4f}")
        return lines
    raise ValueError(f"--output-format: expected one of {OUTPUT_FORMATS}, got {fmt!r}")
