"A study: a YAML grid of settings × seeds (`config`), its results file (`store`) and the runs (`runner`); the CLI is `mtlsyn.study.cli`"
from .config import *  # noqa: F401,F403
from .store import *  # noqa: F401,F403
from .runner import *  # noqa: F401,F403
