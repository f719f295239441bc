"Every data module, imported for its side effects: each benchmark module registers itself in `mtlsyn.data.core.benchmarks`"
from . import core, medmnist, phantom, text, loaders  # noqa: F401
from . import phantom3d  # noqa: F401  (the volumetric phantom)
from .core import load_benchmark, benchmarks  # noqa: F401
from .core import mtlsyn_data  # noqa: F401  (the `mtlsyn-data` command starts here, so every benchmark is registered)
from . import multi  # noqa: F401  (several benchmarks at once)
from . import multisource  # noqa: F401  (pneumonia+phantom: PneumoniaMNIST labels with phantom masks, MultiMix's multi-source setting)
