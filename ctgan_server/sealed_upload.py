"""Uploads held encrypted while their job waits: AES-256-GCM, a fresh key per upload.

A fit's upload lies in the user's staging folder until its job loads it.  With
the local executor that is a second; under Slurm a job can wait hours in
PENDING, on a filesystem every node (and its backups) sees.  So the original
is never written in the clear: `serve` encrypts the frames as they arrive,
keeps the key in its memory only, and hands it to the job in the job's
environment (``KEY_ENV``; for Slurm through ``sbatch --export``).  The key
never lies next to the ciphertext, so a copy of the staging folder, a backup
or another account that can read it sees noise.

File layout: a 12-byte nonce, the ciphertext, the 16-byte GCM tag.  The tag
is checked before a byte of the plaintext is used, so a file changed on disk
is refused, not parsed.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from .wire import TransferError

KEY_ENV = "CTGAN_UPLOAD_KEY"
NONCE_BYTES = 12
TAG_BYTES = 16
OVERHEAD = NONCE_BYTES + TAG_BYTES
_STEP = 1 << 20  # decrypt in place, this much at a time, so the peak stays one copy of the upload


class SealedWriter:
    """A file-like ``write`` that encrypts into ``fh``; ``close`` appends the tag. ``key`` is fresh."""

    def __init__(self, fh: BinaryIO):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self.key = os.urandom(32)
        nonce = os.urandom(NONCE_BYTES)
        self._fh = fh
        self._encryptor = Cipher(algorithms.AES(self.key), modes.GCM(nonce)).encryptor()
        fh.write(nonce)

    def write(self, data: bytes) -> int:
        self._fh.write(self._encryptor.update(data))
        return len(data)

    def close(self) -> None:
        self._fh.write(self._encryptor.finalize())
        self._fh.write(self._encryptor.tag)


def open_sealed(sealed: bytearray, key: bytes) -> memoryview:
    """Decrypt ``sealed`` (a whole sealed file) in place; returns the plaintext as a view into it.

    Raises TransferError when the key does not fit or the file was changed.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    if len(key) != 32:
        raise TransferError("the job was given no key for its staged upload; upload again")
    if len(sealed) < OVERHEAD:
        raise TransferError("the staged upload is cut short; upload again")
    view = memoryview(sealed)
    nonce, body, tag = view[:NONCE_BYTES], view[NONCE_BYTES:-TAG_BYTES], view[-TAG_BYTES:]
    decryptor = Cipher(algorithms.AES(key), modes.GCM(bytes(nonce), bytes(tag))).decryptor()
    buffer = bytearray(_STEP + 16)
    for start in range(0, len(body), _STEP):
        piece = body[start : start + _STEP]
        n = decryptor.update_into(piece, buffer)
        body[start : start + n] = buffer[:n]  # GCM is a stream mode: n == len(piece)
    try:
        decryptor.finalize()
    except InvalidTag:
        raise TransferError("the staged upload does not decrypt (wrong key, or the file was changed); upload again") from None
    return body
