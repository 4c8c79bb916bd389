"""Backends run the model. The core talks to them through :class:`base.Backend`."""
