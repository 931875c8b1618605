"""CurveZMQ keys for tcp:// endpoints.

ipc:// sockets are guarded by file permissions (run dir 0700, sockets 0600).
A tcp:// endpoint has no such guard, so the daemon binds one only with
CurveZMQ: traffic is encrypted, and only clients whose public key is in
``keys/clients/`` may connect.

    <run_dir>/keys/server.key            the daemon's public key (give it to clients)
    <run_dir>/keys/server.key_secret     the daemon's secret key (never leaves)
    <run_dir>/keys/clients/NAME.key      an authorized client's public key
    <run_dir>/keys/clients/NAME.key_secret  its secret key (give it to that client)

``zskill keys`` makes the server pair; ``zskill keys --client NAME`` a client pair.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from ipc import ConfigError

from ._rundir import RunDir

CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def ensure_server_keys(run_dir: Path) -> tuple[Path, bool]:
    """The server's secret key file, created if missing; and whether it was."""
    layout = RunDir(run_dir)
    d, secret = layout.keys, layout.server_secret_key
    if secret.exists():
        return secret, False
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    zmq.auth.create_certificates(str(d), "server")
    os.chmod(secret, 0o600)
    return secret, True


def create_client_keys(run_dir: Path, name: str) -> Path:
    """A new authorized client pair; returns its secret key file."""
    if not CLIENT_NAME.match(name):
        raise ConfigError(f"client name {name!r}: letters, digits, '.', '-', '_' only")
    d = RunDir(run_dir).client_keys
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    if (d / f"{name}.key").exists():
        raise ConfigError(f"a client named {name!r} already has keys in {d}")
    _, secret = zmq.auth.create_certificates(str(d), name)
    os.chmod(secret, 0o600)
    return Path(secret)


@dataclass(frozen=True, slots=True)
class CurveClient:
    """What a client needs to reach a tcp:// endpoint."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def load(cls, server_key: str | Path, client_key: str | Path) -> CurveClient:
        try:
            server_public, _ = zmq.auth.load_certificate(str(server_key))
            public, secret = zmq.auth.load_certificate(str(client_key))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load CurveZMQ keys: {exc}") from exc
        if secret is None:
            raise ConfigError(f"{client_key} holds no secret key (use the .key_secret file)")
        return cls(server_public, public, secret)

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        sock.curve_serverkey = self.server_public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret


def serve_curve(sock: zmq.Socket[bytes], run_dir: Path, endpoint: str) -> None:
    """Make ``sock`` a CurveZMQ server, or refuse: no keys, no tcp."""
    secret = RunDir(run_dir).server_secret_key
    if not secret.exists():
        raise ConfigError(
            f"{endpoint}: a tcp:// endpoint needs CurveZMQ keys and there are none in "
            f"{RunDir(run_dir).keys}; create them with `zskill keys` (and a client pair with "
            "`zskill keys --client NAME`)"
        )
    public, secret_key = zmq.auth.load_certificate(str(secret))
    sock.curve_server = True
    sock.curve_publickey = public
    sock.curve_secretkey = secret_key
