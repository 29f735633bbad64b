"""Private files: the data folder, the database and the stored uploads are readable by their owner only.

Modes are set explicitly after creating, so they hold whatever the process umask is (and a folder or database left
world-readable by an older version is tightened at the next start).
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | Path) -> Path:
    """Create `path` (and missing parents) if needed and make it owner-only."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, DIR_MODE)
    return folder


def private_file(path: str | Path) -> Path:
    """Create `path` empty if it does not exist, and make it owner-only (read and write)."""
    file = Path(path)
    os.close(os.open(file, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    os.chmod(file, FILE_MODE)
    return file


def tighten(path: str | Path) -> None:
    """Make an existing file owner-only; a file that is not there is fine."""
    try:
        os.chmod(path, FILE_MODE)
    except FileNotFoundError:
        pass
