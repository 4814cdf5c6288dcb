"""``asr-hw report``: models x engines x decoders, evaluated through the engine, in one report.

config (validation) -> point (one sweep point, cached) -> plots + document (md, html, json)
-> app (the Hydra app and the sweep callback).
"""
