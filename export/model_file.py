"""A copy of an exported model with some metadata entries set: what `ceod calibrate` and
`ceod baseline` write. The input file is never touched; the copy takes its name only once it
loads."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ceod.contracts.errors import CeodError
from ceod.export.runtime import OnnxModel


def check_new_model_path(model_path: Path, out: Path) -> None:
    """Refuse, in one line, an --out that is the input or already exists."""
    if out.resolve() == Path(model_path).resolve():
        raise CeodError(f"--out {out} is the input model: this writes a new file and never edits the input")
    if out.exists():
        raise CeodError(f"--out {out} exists: choose a new file name (nothing is overwritten)")


def write_model_copy(model_path: Path, entries: dict[str, str], out: Path) -> Path:
    """Save `model_path` with these metadata_props (key -> value; others kept) as `out`."""
    import onnx
    proto = onnx.load(str(model_path))
    props = {p.key: p for p in proto.metadata_props}
    for key, value in entries.items():
        entry = props.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, value
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        onnx.save(proto, tmp)
        OnnxModel(tmp, "cpu")  # the new file loads with its metadata before it takes the name
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out
