"""Byte sizes for people: the one formatter every message that names a size uses."""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
TIB = 1024 * GIB


def format_bytes(n_bytes: int) -> str:
    """A size for people: ``16.9 GiB``, ``2.88 GiB``, ``514 MiB``, ``2 MiB``, ``256 KiB``.

    Binary units throughout. Three significant digits at most, except that a whole
    number of MiB or KiB prints without decimals: limits (``64 MiB``, ``256 KiB``) read
    as they are written in the code.
    """
    if n_bytes >= TIB:
        return f"{n_bytes / TIB:,.1f} TiB"
    if n_bytes >= 10 * GIB:
        return f"{n_bytes / GIB:.1f} GiB"
    if n_bytes >= GIB:
        return f"{n_bytes / GIB:.2f} GiB"
    if n_bytes >= 10 * MIB or (n_bytes % MIB == 0 and n_bytes >= MIB):
        return f"{n_bytes / MIB:.0f} MiB"
    if n_bytes >= MIB:
        return f"{n_bytes / MIB:.1f} MiB"
    if n_bytes >= KIB:
        return f"{n_bytes / KIB:.0f} KiB"
    return f"{n_bytes} bytes"
