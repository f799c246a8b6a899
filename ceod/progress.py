"""Progress bars that fall back to plain iteration where tqdm is not installed (runtime-only PCs)."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], total: int | None = None, desc: str = "",
                 disable: bool = False) -> Iterator[T]:
    """tqdm when available and stderr is a terminal or CEOD_PROGRESS=1; otherwise the items."""
    import os
    if disable or not (sys.stderr.isatty() or os.environ.get("CEOD_PROGRESS") == "1"):
        return iter(items)
    try:
        from tqdm import tqdm
    except ImportError:
        return iter(items)
    return iter(tqdm(items, total=total, desc=desc, leave=False, dynamic_ncols=True))
