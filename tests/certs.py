"""Test certificates, made at test time with the openssl command-line tool.

A throwaway CA, a server certificate it signed (for localhost, 127.0.0.1 and ::1), a client
certificate it signed (for the client-certificate tests), and a key that matches neither (for
the mismatched-key error). Nothing here is committed: keys live in the test's tmp directory.

Why the openssl CLI and not `trustme`/`cryptography`: it is already on every machine the suite
runs on (the `openssl s_client` tests need it anyway), so it costs no new dependency, and these
few invocations are all a test PKI needs.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl")
# Short-lived on purpose; Chromium refuses certificates valid for more than 398 days anyway.
DAYS = "2"
_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate: what clients trust
    cert: Path  # server certificate, signed by the CA
    key: Path  # its private key
    client_cert: Path  # a client certificate signed by the CA
    client_key: Path
    other_key: Path  # a key that matches no certificate here

    def spki_sha256(self) -> str:
        """base64(SHA-256 of the server key's SubjectPublicKeyInfo): Chromium's
        --ignore-certificate-errors-spki-list pins exactly this key."""
        der = _openssl("pkey", "-in", str(self.key), "-pubout", "-outform", "DER")
        return base64.b64encode(hashlib.sha256(der).digest()).decode()


def _openssl(*args: str, cwd: Path | None = None) -> bytes:
    assert OPENSSL is not None, "openssl is not installed (apt-get install openssl)"
    done = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, timeout=60)
    assert done.returncode == 0, (args, done.stderr.decode(errors="replace"))
    return done.stdout


def _signed(directory: Path, name: str, subject: str, extensions: str) -> tuple[Path, Path]:
    key, csr, cert = (directory / f"{name}{suffix}" for suffix in (".key", ".csr", ".pem"))
    ext = directory / f"{name}.ext"
    ext.write_text(extensions)
    _openssl("req", "-new", *_CURVE, "-keyout", str(key), "-out", str(csr), "-subj", subject)
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(directory / "ca.pem"),
             "-CAkey", str(directory / "ca.key"), "-set_serial",
             str(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")),
             "-days", DAYS, "-sha256", "-extfile", str(ext), "-out", str(cert))
    return cert, key


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-new", *_CURVE, "-keyout", str(directory / "ca.key"),
             "-out", str(directory / "ca.pem"), "-days", DAYS, "-sha256",
             "-subj", "/CN=calcserve test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    cert, key = _signed(directory, "server", "/CN=localhost",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
                        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                        "extendedKeyUsage=serverAuth\n")
    client_cert, client_key = _signed(directory, "client", "/CN=calcserve test client",
                                      "basicConstraints=CA:FALSE\n"
                                      "keyUsage=critical,digitalSignature\n"
                                      "extendedKeyUsage=clientAuth\n")
    other_key = directory / "other.key"
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-out", str(other_key))
    return Pki(directory / "ca.pem", cert, key, client_cert, client_key, other_key)
