"The multi-task learner: mixed precision, best-epoch selection, `mtl_learner` and data parallelism (hand-written re-exports)"
from .autocast import *
from .select import *
from .core import *
from .distrib import *
