"""Dataset names: ``survey.table`` style, checked the same way by client and island."""

from __future__ import annotations

import posixpath
import re

from archipel.errors import InvalidArgument

__all__ = ["DATASET_NAME", "check_dataset_name", "check_partition_path"]

# One to three dot-separated parts, each an SQL identifier: gaia_dr3.source, ztf.dr20.objects.
DATASET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,2}$")


def check_dataset_name(name: object) -> str:
    """Returns the name if it is a valid dataset name, else raises InvalidArgument saying why."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument("dataset name is empty")
    if DATASET_NAME.match(name):
        return name
    if "/" in name or "\\" in name:
        why = "it contains a path separator"
    elif ".." in name or name.startswith(".") or name.endswith("."):
        why = "it has an empty part"
    elif any(q in name for q in "'\"`;"):
        why = "it contains a quote or semicolon"
    elif name.count(".") > 2:
        why = "it has more than three parts"
    else:
        why = "each part must be letters, digits or _ and not start with a digit"
    raise InvalidArgument(f"invalid dataset name {name!r}: {why} (expected names like gaia_dr3.source)")


MAX_PARTITION_PATH = 1024


def check_partition_path(path: object) -> str:
    """Returns ``path`` if it is a partition file's path as a catalog record may hold it:
    relative to its dataset's folder, normalised (no ``.``, ``..`` or empty parts), no NUL or
    backslash, at most 1024 characters. Raises InvalidArgument saying why otherwise: a synced
    record naming ``/etc/shadow`` or ``../../x`` must never reach a file system call."""
    if not isinstance(path, str) or not path:
        raise InvalidArgument("partition path is empty")
    if len(path) > MAX_PARTITION_PATH:
        raise InvalidArgument(f"partition path is longer than {MAX_PARTITION_PATH} characters")
    if "\0" in path or "\\" in path or any(ord(c) < 32 for c in path):
        why = "it contains a NUL, backslash or control character"
    elif path.startswith("/"):
        why = "it is absolute"
    elif ".." in path.split("/"):
        why = "it leaves its dataset's folder (..)"
    elif posixpath.normpath(path) != path or path.endswith("/"):
        why = "it is not normalised (empty or '.' parts)"
    else:
        return path
    raise InvalidArgument(f"invalid partition path {path[:200]!r}: {why}")
