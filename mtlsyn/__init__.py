__version__ = "0.0.1"

# fastai decorates functions with `torch.jit.script`, which recent torch deprecates with a FutureWarning
# at import time. Silence exactly that message, here, before any mtlsyn module imports fastai.
import warnings as _warnings
_warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
