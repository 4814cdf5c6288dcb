"""Acoustic models for CTC and the inference graph they export for the hardware engine."""

from asr.models.delta_lstm import DeltaLSTMCTC
from asr.models.graph import InferenceGraph, run_graph
from asr.models.lstm import LSTMCTC
from asr.models.wavenet import WaveNetCTC

__all__ = ["DeltaLSTMCTC", "LSTMCTC", "InferenceGraph", "WaveNetCTC", "run_graph"]
