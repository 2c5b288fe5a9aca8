"""Builds a generated folder once and publishes it whole, for the test-model scripts.

Test binaries run in parallel and each may ask for the same models, so a folder is built under a
lock into a temporary sibling, stamped with a `.complete` file that records what it was built
from, and renamed into place; readers never see half a folder, and a changed script or input
(a different stamp) rebuilds it.
"""

import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path


def is_complete(out_dir: Path, stamp) -> bool:
    try:
        return json.loads((out_dir / ".complete").read_text()) == stamp
    except (OSError, ValueError):
        return False


def build_once(out_dir: Path, stamp, build) -> bool:
    """Calls `build(tmp)` to fill a fresh folder unless `out_dir` already matches `stamp`.

    Returns whether it built anything."""
    if is_complete(out_dir, stamp):
        return False
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{out_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_complete(out_dir, stamp):  # another process finished while we waited
            return False
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
        try:
            os.chmod(tmp, 0o755)
            build(tmp)
            (tmp / ".complete").write_text(json.dumps(stamp))
            if out_dir.exists():
                # Renamed aside first so the swap itself is two renames, never a half-deleted tree.
                old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
                os.rename(out_dir, old / "x")
                shutil.rmtree(old)
            os.rename(tmp, out_dir)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return True
