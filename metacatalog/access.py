"""Who may do what: the caller as a value and the access rules as pure functions.

A ``Caller`` is what a front door (gRPC, HTTP) made of a verified token, a peer island's
certificate, or nothing. Every decision is a function of the caller, the dataset's access facts
(owner, readers, ``public_after``, catalog records authored by the dataset's origin) and the
action; use cases call them in one place each, and the unit tests check them as a table.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from archipel.errors import InvalidArgument, PermissionDenied

__all__ = ["Caller", "ANONYMOUS", "Access", "parse_readers", "parse_public_after", "may_read", "check_read",
           "check_owner", "check_admin", "check_right", "check_user_name", "parse_reader", "RIGHTS"]

RIGHTS = ("compute", "metrics")  # rights beyond reading (metrics: /metrics); admins hold every right
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a user (from a token), a peer island, or anonymous (user "")."""

    user: str = ""
    groups: frozenset[str] = frozenset()
    rights: frozenset[str] = frozenset()
    admin: bool = False
    token_id: str = ""
    island: str = ""  # set when the caller is a peer island (mutual TLS), acting for itself
    raw_token: str = field(default="", repr=False, compare=False)  # forwarded with routed calls

    @property
    def anonymous(self) -> bool:
        return not self.user and not self.island

    @property
    def name(self) -> str:
        if self.island:
            return f"island:{self.island}"
        return self.user or "anonymous"

    def has(self, right: str) -> bool:
        return self.admin or right in self.rights


ANONYMOUS = Caller()


@dataclass(frozen=True)
class Access:
    """A dataset's access facts."""

    owner: str = ""
    readers: tuple[str, ...] = ("public",)
    public_after: str = ""  # YYYY-MM-DD: public from that day on (UTC); "" none

    def is_public(self, today: datetime.date | None = None) -> bool:
        if "public" in self.readers:
            return True
        if self.public_after:
            today = today or datetime.datetime.now(datetime.timezone.utc).date()
            return datetime.date.fromisoformat(self.public_after) <= today
        return False

    def describe(self) -> str:
        text = ",".join(self.readers) or "(owner only)"
        return text + (f", public after {self.public_after}" if self.public_after else "")


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise InvalidArgument(f"{kind} name {name!r} is not valid (letters, digits and _ . @ -, up to 64)")
    return name


def parse_reader(text: str) -> str:
    """One reader: ``public``, ``user:NAME`` or ``group:NAME``."""
    text = (text or "").strip()
    if text == "public":
        return text
    kind, sep, name = text.partition(":")
    if not sep or kind not in ("user", "group"):
        raise InvalidArgument(f"reader {text!r} must be 'public', 'user:NAME' or 'group:NAME'")
    try:
        return f"{kind}:{_check_name(kind, name)}"
    except InvalidArgument as exc:
        raise InvalidArgument(f"reader {text[:80]!r}: {exc}") from None


def parse_readers(value: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Readers from a comma-separated list or a sequence; None means ``public``."""
    if value is None:
        return ("public",)
    items = value.split(",") if isinstance(value, str) else list(value)
    if len(items) > 256:
        raise InvalidArgument("at most 256 readers")
    out = tuple(dict.fromkeys(parse_reader(i) for i in items if str(i).strip()))
    return out


def parse_public_after(value: str | datetime.date | None) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, datetime.date):
        return value.isoformat()
    try:
        return datetime.date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise InvalidArgument(f"public_after {value!r} is not a date YYYY-MM-DD") from None


def check_user_name(name: str) -> str:
    return _check_name("user", name)


def may_read(caller: Caller, access: Access, today: datetime.date | None = None) -> bool:
    """Whether ``caller`` may read a dataset with these access facts."""
    if caller.admin or access.is_public(today):
        return True
    if caller.island:  # islands read what they replicate for their users, who are checked there
        return True
    if not caller.user:
        return False
    if caller.user == access.owner or f"user:{caller.user}" in access.readers:
        return True
    return any(f"group:{g}" in access.readers for g in caller.groups)


def check_read(caller: Caller, dataset: str, access: Access) -> None:
    if not may_read(caller, access):
        raise PermissionDenied(f"{caller.name} may not read dataset {dataset!r} (readers: {access.describe()}; "
                               f"ask its owner {access.owner or '?'} for access)")


def check_owner(caller: Caller, dataset: str, access: Access, action: str) -> None:
    """Writes to a dataset (append, delete, grant) need its owner or an admin."""
    if caller.admin or (caller.user and caller.user == access.owner):
        return
    raise PermissionDenied(f"{caller.name} may not {action} dataset {dataset!r}: only its owner "
                           f"{access.owner or '(none)'} or an admin may")


def check_admin(caller: Caller, action: str) -> None:
    if not caller.admin:
        raise PermissionDenied(f"{action} needs an admin token ({caller.name} is not an admin)")


def check_right(caller: Caller, right: str, action: str) -> None:
    if not caller.has(right):
        raise PermissionDenied(f"{action} needs the {right!r} right ({caller.name} does not hold it; an admin "
                               f"gives it with `archipel tokens create ... --right {right}`)")
