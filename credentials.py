"""Users no longer live here.

ctgan-server-cli keeps its app users in <data_dir>/credentials.json (0600,
not tracked by git), managed with `python -m ctgan_server users ...`.  A server
that finds users below moves them there once and empties this file again.
"""

USERS = {}
