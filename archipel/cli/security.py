"""CLI commands of identity and access: certs, tokens, grant/revoke, whoami, audit."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from archipel.cli.output import act, client_of as _client, needed, print_listing
from archipel.errors import InvalidArgument

__all__ = ["add_commands", "add_access_flags"]




def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else "never"


def cmd_certs_init(args: argparse.Namespace) -> int:
    try:
        from federation.pki import create_ca
    except ModuleNotFoundError as exc:
        raise InvalidArgument(f"certificates need the island extra ({exc}); pip install 'archipel[island]'") from None
    path = create_ca(args.ca_dir, args.name)
    print(f"wrote {path} and {Path(args.ca_dir) / 'ca-key.pem'} (keep the key safe: it admits islands)")
    print(f"islands join this archipelago with: archipel island init DIR --name NAME --ca {args.ca_dir}")
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.action == "create":
            t = c.create_token(needed(args.user, "tokens create needs --user NAME"), groups=args.group or [], rights=args.right or [], admin=args.admin,
                               expires=args.expires)
            print(f"token {t.id} for {t.user} (groups: {','.join(t.groups) or '-'}; rights: "
                  f"{','.join(t.rights) or '-'}; admin: {'yes' if t.admin else 'no'}; expires: {_when(t.expires)})")
            print(t.token)
            return 0
        done = act(c, args, {"revoke": (
            "revoke_token", "id", "tokens revoke needs the token ID (see `archipel tokens list`)",
            lambda t: f"revoked token {t.id} of {t.user}; every island of the archipelago refuses it once the "
                      f"revocation reaches it")})
        if done is not None:
            return done
        found = c.tokens()
    return print_listing(found, "no tokens", ["id", "user", "groups", "rights", "admin", "issuer", "expires", "state"],
                         _token_row)


def _token_row(t) -> list[str]:
    state = f"revoked by {t.revoked_by}" if t.revoked_by else (
        "expired" if t.expires and t.expires < time.time() else "valid")
    return [t.id, t.user, ",".join(t.groups) or "-", ",".join(t.rights) or "-", "yes" if t.admin else "no", t.issuer,
            _when(t.expires), state]


def _print_access(d) -> None:
    print(f"{d.name}: owner {d.owner or '-'}, readers {','.join(d.readers) or '(owner only)'}"
          + (f", public after {d.public_after}" if d.public_after else ""))


def cmd_grant(args: argparse.Namespace) -> int:
    with _client(args) as c:
        d = c.grant(args.dataset, args.reader) if args.command == "grant" else c.revoke(args.dataset, args.reader)
    _print_access(d)
    return 0


def cmd_whoami(args: argparse.Namespace) -> int:
    with _client(args) as c:
        me = c.whoami()
    if me["anonymous"]:
        print(f"anonymous at {me['island']}")
        return 0
    print(f"{me['user']} at {me['island']} (token {me['token_id']}; groups: {','.join(me['groups']) or '-'}; "
          f"rights: {','.join(me['rights']) or '-'}; admin: {'yes' if me['admin'] else 'no'})")
    return 0


def _since(text: str | None) -> float:
    if not text:
        return 0.0
    from archipel.types import parse_duration

    try:
        return time.time() - parse_duration(text)  # "1h": the last hour
    except InvalidArgument:
        pass
    try:
        import datetime as dt

        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        raise InvalidArgument(f"--since {text!r} is neither a duration (1h, 2d) nor a date/time "
                              f"(2026-12-01, 2026-12-01T10:00)") from None


def cmd_audit(args: argparse.Namespace) -> int:
    with _client(args) as c:
        entries = c.audit(user=args.user or "", since=_since(args.since), limit=args.limit)
    if not entries:
        print("no audit entries")
        return 0
    print(f"{'time (UTC)':19} {'user':16} {'method':18} {'outcome':8} {'rows':>9} {'bytes':>11}  datasets / detail")
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e["ts"]))
        print(f"{when:19} {e['user']:16} {e['method']:18} {e['outcome']:8} {e['rows']:>9} {e['bytes']:>11}  "
              f"{','.join(e['datasets'])} {e['detail']}".rstrip())
    return 0


def add_access_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--readers", metavar="LIST", help="who may read it: comma-separated public, user:NAME, "
                   "group:NAME (default public)")
    p.add_argument("--public-after", metavar="YYYY-MM-DD", help="the day it becomes public (a proprietary period)")


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    certs = sub.add_parser("certs", help="the archipelago's certificate authority")
    csub = certs.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    p = csub.add_parser("init", help="create an archipelago CA in CA_DIR (ca.pem, ca-key.pem)")
    p.add_argument("ca_dir", metavar="CA_DIR")
    p.add_argument("--name", default="archipel", help="the archipelago's name, in the CA certificate")
    p.set_defaults(func=cmd_certs_init)

    p = sub.add_parser("tokens", help="make, list and revoke tokens (admins)", parents=[common])
    p.add_argument("action", nargs="?", choices=["list", "create", "revoke"], default="list")
    p.add_argument("id", nargs="?", metavar="ID", help="the token to revoke")
    p.add_argument("--user", help="the token's user")
    p.add_argument("--group", action="append", metavar="G", help="a group of the user (repeatable)")
    p.add_argument("--right", action="append", metavar="R", help="a right beyond reading, e.g. compute (repeatable)")
    p.add_argument("--admin", action="store_true", help="an admin token (every right)")
    p.add_argument("--expires", metavar="DURATION", help="lifetime: 3600, 12h, 30d (default: never)")
    p.set_defaults(func=cmd_tokens)

    for name, helptext in (("grant", "let a reader read a dataset"), ("revoke", "take a reader off a dataset")):
        p = sub.add_parser(name, help=f"{helptext} (its owner or an admin)", parents=[common])
        p.add_argument("dataset")
        p.add_argument("reader", metavar="READER", help="public, user:NAME or group:NAME")
        p.set_defaults(func=cmd_grant)

    p = sub.add_parser("whoami", help="who the island takes you for", parents=[common])
    p.set_defaults(func=cmd_whoami)

    p = sub.add_parser("audit", help="the island's audit log: who called what", parents=[common])
    p.add_argument("--user", help="only this user's calls")
    p.add_argument("--since", help="a duration back (1h, 2d) or a UTC date/time (2026-12-01T10:00)")
    p.add_argument("--limit", type=int, default=200, help="newest entries shown (default 200)")
    p.set_defaults(func=cmd_audit)
