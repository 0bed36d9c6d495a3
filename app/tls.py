"""TLS for `python -m app`: the server's SSLContext, built from the options and checked at start.

    context = server_context(config)    # raises TLSError with one line fit for the log

What the context is: the stdlib's `ssl.create_default_context(Purpose.CLIENT_AUTH)` (its secure
defaults: OpenSSL's cipher list at security level 2, no compression, fresh ECDH keys per
handshake), plus TLS 1.2 as the oldest version (RFC 8996 retired 1.0 and 1.1), ALPN offering
only `http/1.1` (we speak nothing else, so a client that asks for h2 falls back instead of
guessing), and no renegotiation (a client could otherwise make us redo the costliest step of
the handshake at will). Client certificates: `--ssl-ca-certs` with `--ssl-cert-reqs optional` or
`required` (uvicorn's numbers 0/1/2 are accepted for the same).

Files are read when the context is built: once at start to check them (a missing file, a key
that does not match its certificate, an encrypted key: one clear line, exit status 2), then by
every worker as it starts, so a SIGHUP reload picks up a renewed certificate; the
single-process server rebuilds its context on SIGHUP (`Certificates.reload`).
"""

from __future__ import annotations

import logging
import os
import ssl
from typing import Final

from app.config import Config

log = logging.getLogger("calcserve")

CERT_REQS: Final = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}
ALPN: Final = ("http/1.1",)
MINIMUM_VERSION: Final = ssl.TLSVersion.TLSv1_2
# After close(), how long a TLS connection waits for the peer's close_notify before the socket
# is dropped. asyncio's default is 30 s, which lets every client that vanishes hold a
# descriptor for half a minute; nginx sends its close_notify and closes without waiting.
SHUTDOWN_TIMEOUT: Final = 2.0


class TLSError(Exception):
    """The TLS options cannot make a context; the message is one line naming the culprit."""


def enabled(config: Config) -> bool:
    return config.ssl_certfile is not None


def problems(config: Config) -> list[str]:
    """Combinations of TLS options that make no sense (usage errors, before any file is read)."""
    found = []
    if config.ssl_certfile is None:
        for name in ("ssl_keyfile", "ssl_ca_certs"):
            if getattr(config, name) is not None:
                found.append(f"--{name.replace('_', '-')} needs --ssl-certfile")
    if config.ssl_cert_reqs != "none" and config.ssl_ca_certs is None:
        found.append(f"--ssl-cert-reqs {config.ssl_cert_reqs} needs --ssl-ca-certs (the CAs "
                     "that sign client certificates)")
    return found


def server_context(config: Config) -> ssl.SSLContext:
    """A server-side SSLContext from the options; reads every file. Raises TLSError."""
    certfile, keyfile, ca_certs = config.ssl_certfile, config.ssl_keyfile, config.ssl_ca_certs
    if certfile is None:
        raise TLSError("TLS needs --ssl-certfile")
    for flag, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile),
                       ("--ssl-ca-certs", ca_certs)):
        if path is not None and not os.path.isdir(path):
            try:
                with open(path, "rb"):
                    pass
            except OSError as exc:
                raise TLSError(f"cannot read {flag} {path}: {exc.strerror or exc}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = MINIMUM_VERSION
    context.options |= ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(list(ALPN))
    try:  # the certificate file alone first, so that an error names the right file
        ssl.create_default_context(cafile=certfile)
    except ssl.SSLError as exc:
        raise TLSError(f"--ssl-certfile {certfile}: no PEM certificate in it ({_why(exc)})") \
            from None
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    except _EncryptedKey:
        raise TLSError(f"the private key in {keyfile or certfile} is encrypted; give an "
                       "unencrypted key file, readable only by the service's user") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSError(f"--ssl-keyfile {keyfile or certfile} does not match the "
                           f"certificate in --ssl-certfile {certfile}") from None
        where = f"--ssl-keyfile {keyfile}" if keyfile else f"--ssl-certfile {certfile}"
        raise TLSError(f"{where}: no usable PEM private key in it ({_why(exc)})") from None
    if ca_certs is not None:
        try:
            if os.path.isdir(ca_certs):
                context.load_verify_locations(capath=ca_certs)
            else:
                context.load_verify_locations(cafile=ca_certs)
        except ssl.SSLError as exc:
            raise TLSError(f"--ssl-ca-certs {ca_certs}: no PEM certificate in it "
                           f"({_why(exc)})") from None
    context.verify_mode = CERT_REQS[config.ssl_cert_reqs]
    return context


class Certificates:
    """The context new connections get; `reload()` re-reads the files (SIGHUP), and keeps the
    context it had when they are broken, so a bad renewal never takes the server down."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.context = server_context(config)

    def reload(self) -> bool:
        try:
            self.context = server_context(self.config)
        except TLSError as exc:
            log.error("SIGHUP: keeping the certificate in use: %s", exc)
            return False
        log.info("SIGHUP: certificate re-read from %s", self.config.ssl_certfile)
        return True


class _EncryptedKey(Exception):
    pass


def _no_password() -> str:
    # Called by OpenSSL only for an encrypted key: never prompt on the terminal (the default),
    # which would hang a service at start.
    raise _EncryptedKey


def _why(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc).replace("_", " ").lower()
