"""A throwaway PostgreSQL server on loopback, for the tests of ``grow search`` on a real database.

Usage::

    python scripts/postgres.py start        # prints {"url": "postgresql://grow@127.0.0.1:PORT/postgres",
                                            #         "dir": "/tmp/growth-pg-XXXX", "bin": "...", "route": "..."}
    python scripts/postgres.py stop DIR     # stops that server and deletes DIR
    python scripts/postgres.py bin          # installs the server if needed; prints its bin directory

``start`` initialises a new cluster in a fresh temporary directory (trust authentication for the user
``grow``, no fsync: nothing in it is meant to last), starts it on 127.0.0.1 at a free port with no Unix
socket, and waits until it accepts connections. ``tests/test_postgres.py`` does this around its tests.

Where the server binaries come from (``POSTGRES_INSTALL``, default ``auto`` = the first that works):

``system``  ``$POSTGRES_BIN``, Debian's ``/usr/lib/postgresql/<version>/bin``, or ``pg_ctl`` on ``PATH``
``pypi``    the ``pgserver`` wheel from PyPI (server binaries that need only libc and zlib), installed with
            this interpreter's pip into ``$POSTGRES_CACHE`` (default ``~/.cache/growth-automl/pgserver``):
            no root, no system package
``apt``     as root only: ``apt-get install postgresql`` from Debian's packages

PostgreSQL refuses to run as root: as root the server runs as the ``postgres`` user (``nobody`` where
there is none), with binaries it can read copied into the cluster directory when they are not.
Any failure is one line on stderr and exit code 1.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

PGSERVER = "pgserver==0.1.4"
USER = "grow"
PROGRAMS = ("initdb", "pg_ctl", "postgres")


class PostgresError(Exception):
    """Why no server could be started (one line)."""


def _complete(bindir: str | os.PathLike[str] | None) -> Path | None:
    if bindir and all(os.access(Path(bindir) / p, os.X_OK) for p in PROGRAMS):
        return Path(bindir)
    return None


def system_bin() -> Path | None:
    """Server binaries already on this machine, or None."""
    candidates = [os.environ.get("POSTGRES_BIN")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                         if Path(p).parent.name.isdigit() else 0, reverse=True)
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        candidates.append(str(Path(pg_ctl).resolve().parent))
    return next((b for b in map(_complete, candidates) if b is not None), None)


def pypi_bin() -> Path:
    """The ``pgserver`` wheel's binaries, installed with pip into the cache directory if not there yet."""
    cache = Path(os.environ.get("POSTGRES_CACHE") or Path.home() / ".cache" / "growth-automl" / "pgserver")
    bindir = cache / "pgserver" / "pginstall" / "bin"
    if _complete(bindir) is None:
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--upgrade",
                                 "--target", str(cache), PGSERVER], capture_output=True, text=True)
        if result.returncode != 0 or _complete(bindir) is None:
            raise PostgresError(f"pip install {PGSERVER} failed: {_last_line(result.stderr)}")
    return bindir


def apt_bin() -> Path:
    """Debian's ``postgresql`` package, installed with apt-get (root only)."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PostgresError("apt-get install needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"]
    result = subprocess.run(install, capture_output=True, text=True, env=env)
    if result.returncode != 0:  # an empty or stale package list: update it once, then try again
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env)
        result = subprocess.run(install, capture_output=True, text=True, env=env)
    found = system_bin()
    if result.returncode != 0 or found is None:
        raise PostgresError(f"apt-get install postgresql failed: {_last_line(result.stderr)}")
    return found


def find_bin(route: str | None = None) -> tuple[Path, str]:
    """(bin directory, route) of a usable server, installing one by ``route`` (``POSTGRES_INSTALL``)."""
    route = route or os.environ.get("POSTGRES_INSTALL", "auto")
    routes = {"system": lambda: system_bin(), "pypi": pypi_bin, "apt": apt_bin}
    if route not in (*routes, "auto"):
        raise PostgresError(f"POSTGRES_INSTALL={route}: expected auto, system, pypi or apt")
    errors = []
    for name in routes if route == "auto" else (route,):
        try:
            found = routes[name]()
        except PostgresError as err:
            errors.append(str(err))
            continue
        if found is not None:
            return found, name
        errors.append("no server binaries on this machine")
    raise PostgresError("; ".join(errors))


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (this user) unless we are root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise PostgresError("running as root and there is no postgres or nobody user to run the server as")


def _run(cmd: list[str], user: pwd.struct_passwd | None, what: str, timeout: float = 120) -> None:
    ids = {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd="/",
                                **ids)  # type: ignore[call-overload]
    except (OSError, subprocess.TimeoutExpired) as err:
        raise PostgresError(f"{what}: {err}") from None
    if result.returncode != 0:
        raise PostgresError(f"{what} failed: {_last_line(result.stderr or result.stdout)}")


def _readable_by(user: pwd.struct_passwd, bindir: Path) -> bool:
    try:
        probe = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, user=user.pw_uid,
                               group=user.pw_gid, extra_groups=[], cwd="/")
    except OSError:  # not even reachable by that user
        return False
    return probe.returncode == 0


def _open_to_all(tree: Path) -> None:
    """Make a copied tree readable (and its programs runnable) by every user, whatever its source's modes."""
    for path in [tree, *tree.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(mode | 0o555 if path.is_dir() or mode & 0o100 else mode | 0o444)


def start(route: str | None = None) -> dict[str, str]:
    """Initialise and start a throwaway cluster; returns its url, directory, bin directory and route."""
    bindir, used = find_bin(route)
    user = _server_user()
    root = Path(tempfile.mkdtemp(prefix="growth-pg-"))
    try:
        if user is not None:
            os.chmod(root, 0o755)
            if not _readable_by(user, bindir):  # e.g. installed under /root: give the server its own copy
                # (the wheel's binaries find their libraries at $ORIGIN/../../../pgserver.libs)
                top = bindir.parents[2] if used == "pypi" else bindir.parent
                shutil.copytree(top, root / "install", symlinks=True)
                _open_to_all(root / "install")
                bindir = root / "install" / bindir.relative_to(top)
        data = root / "data"
        data.mkdir(mode=0o700)
        if user is not None:
            os.chown(data, user.pw_uid, user.pw_gid)
        _run([str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C",
              "--no-sync"], user, "initdb")
        for attempt in range(3):  # another process may take the free port before the server does
            port = _free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
            try:
                _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60",
                      "-o", options, "start"], user, "pg_ctl start")
                break
            except PostgresError:
                if attempt == 2:
                    raise
        info = {"url": f"postgresql://{USER}@127.0.0.1:{port}/postgres", "dir": str(root), "bin": str(bindir),
                "route": used}
        (root / "server.json").write_text(json.dumps(info))
        return info
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def stop(directory: str | os.PathLike[str]) -> None:
    """Stop the server started in ``directory`` (immediately: nothing in it is kept) and delete it."""
    root = Path(directory)
    info = json.loads((root / "server.json").read_text())
    try:
        _run([str(Path(info["bin"]) / "pg_ctl"), "-D", str(root / "data"), "-m", "immediate", "-w", "stop"],
             _server_user(), "pg_ctl stop", timeout=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["start"] and len(argv) == 1:
            print(json.dumps(start()), flush=True)
        elif argv[:1] == ["stop"] and len(argv) == 2:
            stop(argv[1])
        elif argv == ["bin"]:
            print(find_bin()[0])
        else:
            print("usage: postgres.py start | stop DIR | bin", file=sys.stderr)
            return 2
    except (PostgresError, OSError, ValueError) as err:
        print(f"postgres.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
