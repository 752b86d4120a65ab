"""App users of this ctgan-server-cli server.

Managed by `python -m ctgan_server users ...`; do not edit by hand.  Each value
is a salted scrypt hash: scrypt$N$r$p$salt$hash (base64).  No passwords here.
"""

USERS = {
}
