"""Who may use the page: one password (argon2 hash in a file), a signed cookie, CSRF tokens, a login rate limit.

One runner, one password: there are no user names. The hash is argon2id with OWASP's smallest recommended cost
(19 MiB, 2 passes, 1 lane): a Pi Zero 2 W checks it in well under a second without starving the daemon of memory,
and a stolen file still costs an attacker that much per guess. The cookie key lives beside the password file and
is made anew with every new password, so changing the password logs every phone out.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from collections import defaultdict, deque
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from stackcue.errors import ConfigError, InputError, StorageError

MIN_PASSWORD = 8
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


def key_file(password_file: Path) -> Path:
    """The cookie-signing key's file, beside the password file."""
    return password_file.with_name(password_file.name + ".cookie-key")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` mode 0600, whole or not at all (a temp file renamed over it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None


def set_password(password_file: Path, password: str) -> None:
    """Store the password's hash and a new cookie key (which ends every earlier login)."""
    if len(password) < MIN_PASSWORD:
        raise InputError(f"the password must have at least {MIN_PASSWORD} characters")
    _write_private(password_file, HASHER.hash(password) + "\n")
    _write_private(key_file(password_file), secrets.token_urlsafe(48) + "\n")


def read_hash(password_file: Path) -> str:
    """The stored hash; a one-line error naming the key when there is none yet."""
    try:
        text = password_file.read_text().strip()
    except FileNotFoundError:
        raise ConfigError(
            f"no web password: [serve] password_file {password_file} does not exist; "
            "set one with `stackcue serve --set-password`"
        ) from None
    except OSError as exc:
        raise ConfigError(f"[serve] password_file {password_file}: {exc.strerror or exc}") from None
    if not text.startswith("$argon2"):
        raise ConfigError(
            f"[serve] password_file {password_file} holds no argon2 hash; set it with `stackcue serve --set-password`"
        )
    return text


def cookie_key(password_file: Path) -> str:
    """The key that signs the session cookie, made on first use."""
    return read_or_make_key(key_file(password_file))


def read_or_make_key(path: Path) -> str:
    """A secret key kept in ``path`` (mode 0600), made on first use (serve's cookie key, the hub's)."""
    try:
        key = path.read_text().strip()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    key = secrets.token_urlsafe(48)
    _write_private(path, key + "\n")
    return key


def check_password(stored_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def csrf_token(session: dict) -> str:
    """The session's CSRF token, made on first use (a login makes a new session and so a new token)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(session: dict, supplied: str | None) -> bool:
    token = session.get("csrf")
    return isinstance(token, str) and isinstance(supplied, str) and hmac.compare_digest(token, supplied)


class LoginLimiter:
    """At most ``limit`` failed logins per client address in ``window_s``; further tries are refused unchecked."""

    def __init__(self, limit: int = 5, window_s: float = 60.0, clock=time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._fails: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, addr: str) -> deque[float]:
        q = self._fails[addr]
        cutoff = self.clock() - self.window_s
        while q and q[0] < cutoff:
            q.popleft()
        if not q:
            del self._fails[addr]
        return q

    def retry_after(self, addr: str) -> float:
        """Seconds until ``addr`` may try again; 0 when it may now."""
        q = self._recent(addr)
        if len(q) < self.limit:
            return 0.0
        return max(1.0, q[-self.limit] + self.window_s - self.clock())

    def failed(self, addr: str) -> None:
        self._fails[addr].append(self.clock())
        if len(self._fails) > 10000:  # a flood of addresses: forget the oldest rather than grow without bound
            self._fails.pop(next(iter(self._fails)))

    def succeeded(self, addr: str) -> None:
        self._fails.pop(addr, None)
