"Every augment module that stands before the learner, imported for its side effects: each registers its generators in `mtlsyn.augment.core.generators`"
from . import core, classical, mix, diffusion  # noqa: F401
# Not `quality`: it imports the model and the learner, so it stands after them (nbs/05d_augment.quality.ipynb)
# and is imported where it is used (the `mtlsyn-synth` command, the study).
