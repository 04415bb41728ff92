"""Dataset names: ``survey.table`` style, checked the same way by client and island."""

from __future__ import annotations

import re

from archipel.errors import InvalidArgument

__all__ = ["DATASET_NAME", "check_dataset_name"]

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
