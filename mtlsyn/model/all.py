"Every model module, imported for its side effects: each encoder, task and sharing registers itself (`openclip:` encoders included)"
from . import encoders, tasks, vlm, openclip, sharing, pretext, encoders3d  # noqa: F401
