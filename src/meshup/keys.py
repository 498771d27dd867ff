"""The master key of a deployment: where its file lives, and the check that it fits the database."""

from __future__ import annotations

from pathlib import Path

from meshup.config import Settings
from meshup.iam.secrets import MasterKey, MasterKeyError
from meshup.store import identity as identity_store
from meshup.store.db import Database, sqlite_path

KEY_CHECK_SETTING = "master_key_check"


def key_file_for(settings: Settings) -> Path:
    if settings.master_key_file is not None:
        return settings.master_key_file
    database = sqlite_path(settings.database_url)
    if database is not None:
        return database.parent / "meshup.key"
    return Path("meshup.key")


def load_master_key(settings: Settings, db: Database) -> MasterKey:
    """The configured key, or the key file (created on first start); checked against the database."""
    if settings.master_key:
        key = MasterKey.from_text(settings.master_key)
    else:
        key = MasterKey.load_or_create(key_file_for(settings))
    with db.write() as conn:
        stored = identity_store.get_setting(conn, KEY_CHECK_SETTING)
        if stored is None:
            identity_store.set_setting(conn, KEY_CHECK_SETTING, key.check_value())
        elif stored != key.check_value():
            raise MasterKeyError(
                "the master key does not match the one this database was set up with "
                "(check MESHUP_MASTER_KEY / the key file)"
            )
    return key
