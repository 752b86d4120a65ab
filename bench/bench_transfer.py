"""Bulk transfer throughput on loopback: frames inside the SSH session against the SFTP path they replaced.

    python -m bench.bench_transfer [CSV] [--copies 40] [--runs 3]

Builds a CSV of CSV's rows repeated ``--copies`` times (default: diamonds,
about 100 MB), gzips it once, then moves those gzip bytes over a throwaway
OpenSSH sshd on 127.0.0.1, each way:

- frames: `upload` (the server also inflates every byte to check the limits)
  and `download` of a stored dataset, through the real client session;
- sftp: paramiko's SFTP put and get of the same file, as release 0.1 did it
  (1 MiB blocks, pipelined writes, prefetched reads).

Reports MB/s (of gzip bytes) as the median of ``--runs``.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import PASSWORD, REPO, USER, make_server_dir, write_client_config
from tests.sshd import running_sshd

BLOCK = 1 << 20


def build_gzip(csv: Path, copies: int, out: Path) -> Path:
    lines = csv.read_bytes().splitlines(keepends=True)
    header, rows = lines[0], b"".join(lines[1:])
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(header)
        for _ in range(copies):
            gz.write(rows)
    return out


def frames(config: Path, gz: Path, server: Path, runs: int) -> tuple[list[float], list[float]]:
    from ctgan_host import Client

    up, down = [], []
    stored = server / "synthetic_csv_database" / USER / "bench_20260101t000000_1_synthetic.csv.gz"
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(gz.read_bytes())
    with Client.from_config(config) as client:
        client.login(USER, PASSWORD)
        session = client.session
        for _ in range(runs):
            start = time.perf_counter()
            with open(gz, "rb") as fh:
                result = session.call("upload", upload=iter(lambda: fh.read(BLOCK), b""), filename="bench.csv")
            up.append(time.perf_counter() - start)
            assert result["size"] == gz.stat().st_size
            (server / "original_data" / USER / f"{result['token']}.csv.gz").unlink()
            start = time.perf_counter()
            received = []
            session.call("download", download=received.append, name=stored.name)
            down.append(time.perf_counter() - start)
            assert sum(map(len, received)) == gz.stat().st_size
    return up, down


def sftp(sshd, gz: Path, tmp: Path, runs: int) -> tuple[list[float], list[float]]:
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(str(sshd.known_hosts))
    client.connect(
        "127.0.0.1",
        port=sshd.port,
        username=sshd.user,
        key_filename=str(sshd.identity_file),
        allow_agent=False,
        look_for_keys=False,
    )
    channel = client.open_sftp()
    remote = str(tmp / "sftp_copy.gz")
    up, down = [], []
    try:
        for _ in range(runs):
            start = time.perf_counter()
            with open(gz, "rb") as src, channel.open(remote, "wb", bufsize=BLOCK) as dst:
                dst.set_pipelined(True)
                for block in iter(lambda: src.read(BLOCK), b""):
                    dst.write(block)
            up.append(time.perf_counter() - start)
            start = time.perf_counter()
            size = 0
            with channel.open(remote, "rb", bufsize=BLOCK) as src:
                src.prefetch()
                for block in iter(lambda: src.read(BLOCK), b""):
                    size += len(block)
            down.append(time.perf_counter() - start)
            assert size == gz.stat().st_size
    finally:
        channel.close()
        client.close()
    return up, down


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_transfer", description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="?", default=str(REPO.parent / "shared" / "datasets" / "diamonds.csv"))
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        gz = build_gzip(Path(args.csv), args.copies, tmp / "data.csv.gz")
        megabytes = gz.stat().st_size / 1e6
        server = make_server_dir(tmp)
        (tmp / "sshd").mkdir()
        with running_sshd(tmp / "sshd") as sshd:
            client_root = tmp / "client"
            client_root.mkdir()
            config = write_client_config(
                client_root / "config.toml",
                sshd.client_settings(server),
                client_root,
            )
            results = {"frames": frames(config, gz, server, args.runs), "sftp": sftp(sshd, gz, tmp, args.runs)}
        print(f"{megabytes:.1f} MB of gzip ({Path(args.csv).name} x {args.copies}), median of {args.runs} runs, SSH on loopback")
        print("| path | upload | download |")
        print("| --- | --- | --- |")
        for name, (up, down) in results.items():
            print(f"| {name} | {megabytes / statistics.median(up):.0f} MB/s | {megabytes / statistics.median(down):.0f} MB/s |")


if __name__ == "__main__":
    main()
