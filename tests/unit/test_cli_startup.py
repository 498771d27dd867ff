"""What ``meshup --help`` loads: the command line only, not the server behind ``serve``.

Test suites and scripts start meshup often; the web framework, the database library and the
server are imported by the commands that use them."""

from __future__ import annotations

import subprocess
import sys

SERVER_SIDE = ("fastapi", "starlette", "pydantic", "uvicorn", "sqlalchemy", "alembic", "argon2")


def modules_after(*argv: str) -> tuple[str, set[str]]:
    probe = (
        "import sys\n"
        f"sys.argv = ['meshup', *{list(argv)!r}]\n"
        "import meshup.cli\n"
        "try:\n"
        "    meshup.cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\n'.join(sorted({name.split('.')[0] for name in sys.modules})), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return done.stdout, set(done.stderr.split())


def test_help_loads_no_server_side_library() -> None:
    out, loaded = modules_after("--help")
    assert "serve" in out and "worker" in out and "job" in out
    assert loaded.isdisjoint(SERVER_SIDE), sorted(loaded & set(SERVER_SIDE))


def test_serve_help_lists_the_processes_option_without_loading_the_server() -> None:
    out, loaded = modules_after("serve", "--help")
    assert "--processes" in out and "MESHUP_PROCESSES" in out
    # Typer itself checks option values with pydantic once a command is chosen.
    server = set(SERVER_SIDE) - {"pydantic"}
    assert loaded.isdisjoint(server), sorted(loaded & server)
