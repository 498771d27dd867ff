"""The newest schema revision as start-up reads it (plain file text) against Alembic's own answer."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from meshup.store.revisions import head_revision


def alembic_head() -> str | None:
    config = Config()
    config.set_main_option("script_location", "meshup.store:migrations")
    return ScriptDirectory.from_config(config).get_current_head()


def write(directory: Path, name: str, revision: str, down: str) -> None:
    (directory / f"{name}.py").write_text(
        f'"""A migration."""\n\nrevision = "{revision}"\ndown_revision = {down}\n\n\ndef upgrade() -> None:\n    pass\n'
    )


def test_the_head_is_the_one_alembic_upgrades_to() -> None:
    assert head_revision() is not None
    assert head_revision() == alembic_head()


def test_a_chain_has_its_last_revision_as_head(tmp_path: Path) -> None:
    write(tmp_path, "0001_a", "0001", "None")
    write(tmp_path, "0002_b", "0002", '"0001"')
    write(tmp_path, "0003_c", "0003", "'0002'")
    assert head_revision(tmp_path) == "0003"


def test_two_heads_leave_the_decision_to_alembic(tmp_path: Path) -> None:
    write(tmp_path, "0001_a", "0001", "None")
    write(tmp_path, "0002_b", "0002", '"0001"')
    write(tmp_path, "0002_c", "0002c", '"0001"')
    assert head_revision(tmp_path) is None


def test_a_merge_leaves_the_decision_to_alembic(tmp_path: Path) -> None:
    write(tmp_path, "0001_a", "0001", "None")
    write(tmp_path, "0002_b", "0002", '"0001"')
    write(tmp_path, "0003_c", "0003", '("0001", "0002")')
    assert head_revision(tmp_path) is None


def test_a_revision_revising_an_unknown_one_leaves_the_decision_to_alembic(tmp_path: Path) -> None:
    write(tmp_path, "0002_b", "0002", '"0001"')
    assert head_revision(tmp_path) is None


def test_no_migrations_give_no_head(tmp_path: Path) -> None:
    assert head_revision(tmp_path) is None
