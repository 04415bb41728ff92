"""Making a new island's folder: its configuration, its certificate signed by the
archipelago's CA (or a CA of its own), its catalog and an admin token. All of it or nothing: a
step that fails removes what the earlier ones wrote."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from archipel.errors import InvalidArgument
from federation.pki import CA_FILE, CERT_FILE, KEY_FILE, check_ca, create_ca, issue_island, load_credentials
from island.config import CONFIG_FILE, IslandConfig, write_config
from island.security.tokens import mint
from metacatalog.store import CatalogStore

__all__ = ["Founded", "found_island", "ADMIN_TOKEN_FILE"]

ADMIN_TOKEN_FILE = "admin.token"


@dataclass(frozen=True)
class Founded:
    config: Path
    ca_dir: Path
    new_ca: bool
    admin_token: Path


def found_island(cfg: IslandConfig, ca_dir: str | Path | None = None) -> Founded:
    """Writes a new island into ``cfg.root``: refused before anything is written when the
    folder holds an island already or ``ca_dir`` is not a readable CA."""
    root = cfg.root
    if (root / CONFIG_FILE).exists():
        raise InvalidArgument(f"{root / CONFIG_FILE} already exists; edit it instead")
    if ca_dir is not None:
        check_ca(Path(ca_dir))
    existed = root.exists()
    written: list[Path] = []
    try:
        written.append(write_config(cfg))
        ca = Path(ca_dir) if ca_dir is not None else root / "ca"
        if ca_dir is None:
            create_ca(ca, f"{cfg.island.name}'s")
            written.append(ca)
        written += [root / CA_FILE, root / CERT_FILE, root / KEY_FILE]
        issue_island(ca, root, cfg.island.name, cfg.island.host)
        creds = load_credentials(root, cfg.island.name)
        token, claims = mint(creds, "admin", admin=True)
        written += [cfg.catalog_path, cfg.catalog_path.with_name(cfg.catalog_path.name + "-wal"),
                    cfg.catalog_path.with_name(cfg.catalog_path.name + "-shm")]
        store = CatalogStore(cfg.catalog_path, cfg.island.name, signer=creds.sign)
        with store.transaction() as w:
            w.put_token(claims.record())
        store.close()
        token_path = root / ADMIN_TOKEN_FILE
        written.append(token_path)
        token_path.touch(mode=0o600)
        token_path.write_text(token + "\n")
        return Founded(written[0], ca, ca_dir is None, token_path)
    except BaseException:
        for p in reversed(written):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        if not existed:
            shutil.rmtree(root, ignore_errors=True)
        raise
