"""`ctgan-host demo`: the whole job on bundled data, with no set-up.

With the shipped ``host = "local"`` config it creates its own user on the
embedded server, which is why this module may import ``ctgan_server.auth``
and ``ctgan_server.settings`` (the documented exceptions to "the client
imports only ``ctgan_server.wire``").
"""

from __future__ import annotations

import filecmp
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from . import ui

if TYPE_CHECKING:
    from .client import Client

DEMO_USER = "demo"
DEMO_CSV = Path(__file__).parent / "demo_data" / "penguins.csv"
DEMO_EPOCHS = 300  # upstream's default; about 20 s on 2 CPU cores


def ensure_local_demo_user(server_dir: str) -> tuple[str, str]:
    """Give the local server a demo user with a fresh random password for this run."""
    from ctgan_server.auth import CredentialStore
    from ctgan_server.settings import load_settings

    store = CredentialStore(load_settings(Path(server_dir)).credentials_file)
    password = secrets.token_urlsafe(18)
    if DEMO_USER in store.names():
        store.set_password(DEMO_USER, password)
    else:
        store.add(DEMO_USER, password)
    return DEMO_USER, password


def run_demo(client: "Client", csv: Path, epochs: int, out_dir: Path) -> None:
    """Fit ``csv`` as the logged-in ``client``, sample as many rows, download them again and compare."""
    import pandas as pd

    user = client.user
    original = pd.read_csv(csv)
    ui.err.print(f"[bold]1/3 fit[/bold]: {csv.name}, {len(original)} rows, {epochs} epochs, as user {user!r}")
    with ui.FitProgress() as progress:
        model = client.fit(csv, epochs=epochs, on_event=progress.on_event)
    ui.err.print(f"Model stored as {model}")
    ui.err.print(f"Fit report: {client.report(model)['verdict']} (details: ctgan-host report {model})")

    ui.err.print(f"[bold]2/3 sample[/bold]: {len(original)} rows")
    sampled, stored = client.sample_to_file(model, len(original), out_dir)
    ui.err.print(f"Wrote {sampled}")

    ui.err.print(f"[bold]3/3 download[/bold]: {stored['name']}")
    downloaded = client.download_to_file(stored["name"], out_dir / "downloaded")
    same = filecmp.cmp(sampled, downloaded, shallow=False)
    ui.err.print(f"Wrote {downloaded} ({'identical to' if same else 'DIFFERENT from'} the sampled file)")

    synthetic = pd.read_csv(downloaded)
    ui.out.print(ui.comparison_table(original, synthetic))
    dtypes_ok = list(original.dtypes.astype(str)) == list(synthetic.dtypes.astype(str))
    ui.out.print(
        f"Columns and dtypes {'match' if dtypes_ok and list(original.columns) == list(synthetic.columns) else 'DIFFER'}; "
        f"synthetic data in {downloaded}"
    )
    if not (same and dtypes_ok):
        from ctgan_server.wire import CtganError

        raise CtganError("the demo's round trip did not give back what it should")
