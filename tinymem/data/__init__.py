"""TinyMem data sets: one self-describing file per (family, artifact, size, seed).

:class:`~tinymem.data.core.TinyMemData` is the container every later stage reads; builders live in
:mod:`tinymem.data.math` (synthetic sequences) and :mod:`tinymem.data.language` (text chunks).
"""

from tinymem.data.core import DataFormatError, MemSet, TinyMemData, TokenInfo

__all__ = ["DataFormatError", "MemSet", "TinyMemData", "TokenInfo"]
