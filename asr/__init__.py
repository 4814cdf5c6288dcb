"""asr: data, features, models, training, decoding and compression of CTC speech recognizers."""

__version__ = "0.1.0"
