"""Backends run the model. The core talks to them through the protocols in :mod:`.base`:
a :class:`~.base.TokenBackend` (llama.cpp, the scripted replay) or a
:class:`~.base.TextBackend` (a server), told apart by ``backend.is_remote``."""
