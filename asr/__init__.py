"""asr: data, features, models, training, decoding and compression of CTC speech recognizers."""

from importlib import resources
from pathlib import Path

__version__ = "0.1.0"

# The Hydra config tree, a package resource: asr/conf is a link to the repository's conf/ in a
# checkout (editable installs read it there) and a copy of it in a wheel. Every app has its own
# root in it (asr_train/, asr_compress/, asr_hw_report/: its primary config and the groups it
# uses, linked in), so each app's --help lists its own groups only.
CONF_DIR = Path(str(resources.files(__name__) / "conf"))
