"""The `ctgan-host` command line (also `python -m ctgan_host`): thin click commands over ``Client``.

Each command gathers its inputs (flags, then environment, then prompts when
stdin is a terminal), makes one or two ``Client`` calls and prints the result.
``main`` is the one place where errors become `Error: ...` and exit codes.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import click

from ctgan_server import __version__
from ctgan_server.wire import (
    MAX_EPOCHS,
    MAX_HOLDOUT,
    MAX_ROWS,
    MAX_SEED,
    PROTECT_LEVELS,
    CtganError,
    NotFoundError,
    UsageError,
    check_line,
)

from . import ui
from .client import DEFAULT_EPOCHS, Client, check_local_csv
from .config import Config, load_config
from .demo import DEMO_CSV, DEMO_EPOCHS

EXIT_INTERRUPTED = 130
EPOCHS = click.IntRange(min=1, max=MAX_EPOCHS)
ROWS = click.IntRange(min=1, max=MAX_ROWS)
SEED = click.IntRange(min=0, max=MAX_SEED)
HOLDOUT = click.FloatRange(min=0.0, max=MAX_HOLDOUT)


class App:
    """Global options and the lazily built config and client, shared by every command."""

    def __init__(self, config_path: str | None, user: str | None, password_stdin: bool, debug: bool):
        self.config_path = config_path
        self.user = user
        self.password_stdin = password_stdin
        self.debug = debug
        self._config: Config | None = None
        self._client: Client | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def ask(self, prompt: str, what: str, type: Any = str, hide_input: bool = False) -> Any:
        """Prompt on a terminal; otherwise a missing value is a usage error, never a hang."""
        if not ui.stdin_is_terminal():
            raise UsageError(f"missing {what} (stdin is not a terminal, so nothing is asked)")
        return click.prompt(prompt, type=type, hide_input=hide_input, err=True)

    def open(self) -> Client:
        """Connect and say hello, once: the server may already know the user from the SSH key."""
        if self._client is None:
            client = Client.from_loaded(self.config, debug=self.debug)
            with ui.status(f"Connecting to {self.config.server.host}..."):
                client.connect()
            self._client = client
        return self._client

    def credentials(self) -> tuple[str, str]:
        """The username (flag, environment, the name the SSH key is bound to, or a prompt), then the password."""
        pinned = self.open().pinned_user
        user = (
            self.user
            or os.environ.get("CTGAN_USER")
            or pinned
            or self.ask("Please enter your username", "username: use --user or CTGAN_USER")
        )
        if self.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise UsageError("--password-stdin was given but stdin held no password")
        else:
            password = os.environ.get("CTGAN_PASSWORD") or self.ask(
                "Please enter your password",
                "password: use --password-stdin or CTGAN_PASSWORD",
                hide_input=True,
            )
        return user, password

    def connect(self, user: str, password: str) -> Client:
        client = self.open()
        with ui.status("Logging in..."):
            client.login(user, password)
        return client

    def login(self) -> Client:
        return self.connect(*self.credentials())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


pass_app = click.make_pass_decorator(App)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config_path", metavar="FILE", help="config.toml to use (default: $CTGAN_HOST_CONFIG, then ./config.toml)"
)
@click.option("--user", metavar="NAME", help="app username (default: $CTGAN_USER, then a prompt)")
@click.option("--password-stdin", is_flag=True, help="read the password from the first line of stdin")
@click.option("--debug", is_flag=True, help="show tracebacks and the server's log")
@click.version_option(__version__, prog_name="ctgan-server-cli")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, user: str | None, password_stdin: bool, debug: bool) -> None:
    """Fit CTGAN on a server over SSH, sample synthetic data, and bring it back.

    \b
    Example:
      ctgan-host --user alice fit loans.csv --epochs 300
    """
    app = ctx.obj = App(config_path, user, password_stdin, debug)
    ctx.call_on_close(app.close)


def _local_csv(app: App, csv: str | None, interactive: bool) -> Path:
    """The CSV to fit: the argument, or else, on a terminal, the original tool's listing of [paths] original_data and a prompt."""
    folder = app.config.original_data
    if csv is None:
        if interactive:
            ui.err.print(f"[bold]{ui.BANNER}[/bold]")
            found = sorted(p.name for p in folder.glob("*.csv")) if folder.is_dir() else []
            ui.err.print(f"CSV files in {folder}:" if found else f"(no CSV files in {folder})")
            for name in found:
                ui.err.print(f"  {name}")
        csv = app.ask("Please enter original data filename", "CSV argument")
    return check_local_csv(_resolve_csv(csv, folder))


def _resolve_csv(name: str, folder: Path) -> Path:
    for candidate in (Path(name).expanduser(), folder / name):
        if candidate.is_file():
            return candidate
    if Path(name).exists():
        return Path(name)  # a folder: check_local_csv says so
    raise NotFoundError(f"no such file: {name} (looked in the current folder and in {folder})")


@cli.command()
@click.argument("csv", required=False)
@click.option("--epochs", type=EPOCHS, help=f"training epochs (default {DEFAULT_EPOCHS}; asked on a terminal)")
@click.option("--discrete", multiple=True, metavar="COL", help="treat COL as categories (repeatable)")
@click.option("--continuous", multiple=True, metavar="COL", help="treat COL as numbers (repeatable)")
@click.option("--datetime", multiple=True, metavar="COL", help="treat COL as dates (repeatable)")
@click.option("--id", "ids", multiple=True, metavar="COL", help="treat COL as record IDs: fresh ones are generated (repeatable)")
@click.option("--ignore", multiple=True, metavar="COL", help="do not learn COL; it comes back empty (repeatable)")
@click.option("--seed", type=SEED, help="make the fit repeatable on CPU")
@click.option(
    "--holdout",
    type=HOLDOUT,
    default=0.0,
    show_default=True,
    metavar="F",
    help="share of rows kept out of training, to measure memorisation",
)
@click.option(
    "--protect",
    type=click.Choice(PROTECT_LEVELS),
    default="rare",
    show_default=True,
    help="value protection: rare categories never come back, extremes are bounded by quantiles",
)
@click.option(
    "--constraints",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="a TOML file of [[rule]] tables every synthetic row keeps",
)
@click.option("--detach", is_flag=True, help='start the fit as a job and return at once (with --json: {"job": ID})')
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@pass_app
def fit(
    app: App,
    csv: str | None,
    epochs: int | None,
    discrete: tuple[str, ...],
    continuous: tuple[str, ...],
    datetime: tuple[str, ...],
    ids: tuple[str, ...],
    ignore: tuple[str, ...],
    seed: int | None,
    holdout: float,
    protect: str,
    constraints: str | None,
    detach: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Upload CSV, fit CTGAN on the server, and store the model there.

    The fit runs as a job on the server and survives a dropped connection; fit follows it
    (Ctrl-C detaches, it does not cancel).  The server shows its column plan first; the kind options override it.

    \b
    Example:
      ctgan-host fit loans.csv --epochs 300 --discrete branch_code
      ctgan-host fit loans.csv --constraints rules.toml --protect strict
    """
    interactive = ui.stdin_is_terminal()
    path = _local_csv(app, csv, interactive)
    rules = _rules_for(constraints, path)
    user, password = app.credentials()
    if epochs is None:
        epochs = app.ask("Please choose number of epochs for fitting", "--epochs", type=EPOCHS) if interactive else DEFAULT_EPOCHS
    if interactive and not yes:
        target = app.config.server.host
        if not ui.confirm(f"Upload {path.name} ({ui.human_size(path.stat().st_size)}) to {target} and fit {epochs} epochs?"):
            raise click.Abort()
    client = app.connect(user, password)
    ui.note(f"Uploading {path.name} ({ui.human_size(path.stat().st_size)}, gzipped) to {app.config.server.host}...")
    with ui.TransferProgress(f"upload {path.name}", path.stat().st_size) as progress:
        job = client.start_fit(
            path,
            epochs=epochs,
            discrete=discrete,
            continuous=continuous,
            datetime=datetime,
            ids=ids,
            ignore=ignore,
            seed=seed,
            holdout=holdout,
            protect=protect,
            constraints=rules,
            on_upload=progress,
        )
    _follow_fit(client, job, detach, as_json)


def _follow_fit(client: Client, job: str, detach: bool, as_json: bool) -> None:
    """After the fit has started: say how to follow it (--detach), or follow it to its model."""
    if detach:
        if as_json:
            ui.print_json({"job": job})
        else:
            ui.out.print(f"Started job [bold]{job}[/bold]; follow it with: {_prog()} jobs follow {job}")
        return
    model = _follow(client, job)["model"]
    if as_json:
        ui.print_json({"model": model})
    else:
        ui.out.print(f"Model saved on the server as [bold]{model}[/bold]")


def _rules_for(constraints: str | None, csv: Path) -> list[dict[str, Any]] | None:
    """The rules file, read and matched against the CSV's header before the password is asked for."""
    if not constraints:
        return None
    from .rules_file import check_rule_columns, csv_header, load_rules

    rules = load_rules(constraints)
    check_rule_columns(rules, csv_header(csv), csv.name)
    return rules


def _follow(client: Client, job: str) -> dict[str, Any]:
    try:
        with ui.FitProgress() as progress:
            return client.follow(job, on_event=progress.on_event)
    except KeyboardInterrupt:
        raise Detached(job, _prog()) from None


def _prog() -> str:
    """The program's name as it was invoked (`ctgan-host`), for the commands a message suggests."""
    return click.get_current_context().find_root().info_name or "ctgan-host"


class Detached(Exception):
    """Ctrl-C while following: the job runs on, the command ends."""

    def __init__(self, job: str, prog: str):
        super().__init__(job)
        self.job = job
        self.prog = prog


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="print a JSON list")
@click.pass_context
def jobs(ctx: click.Context, as_json: bool) -> None:
    """List your fit jobs; `jobs follow|cancel|logs|delete ID` act on one.

    \b
    Example:
      ctgan-host jobs --json
    """
    if ctx.invoked_subcommand is None:
        found = ctx.find_object(App).login().jobs()
        ui.print_json(found) if as_json else ui.out.print(ui.jobs_table(found))


@jobs.command("follow")
@click.argument("job")
@pass_app
def jobs_follow(app: App, job: str) -> None:
    """Show a job's live progress until it ends (exit 0 only when DONE).

    \b
    Example:
      ctgan-host jobs follow 20261125t130025-a1b2c3
    """
    result = _follow(app.login(), job)
    if result.get("kind") == "sample":
        # The rows are stored on the server; `download` brings them here.
        ui.out.print(f"Job {job} is DONE; dataset [bold]{result['output']}[/bold] ({_prog()} download {result['output']})")
    else:
        ui.out.print(f"Job {job} is DONE; model [bold]{result['model']}[/bold]")


@jobs.command("cancel")
@click.argument("job")
@pass_app
def jobs_cancel(app: App, job: str) -> None:
    """Stop a QUEUED or RUNNING job; no model is kept.

    \b
    Example:
      ctgan-host jobs cancel 20261125t130025-a1b2c3
    """
    with ui.status(f"Canceling {job}..."):
        result = app.login().cancel(job)
    ui.out.print(f"Job {job} is {result['state']}")


@jobs.command("logs")
@click.argument("job")
@pass_app
def jobs_logs(app: App, job: str) -> None:
    """Print a job's log: its events, then its process's output.

    \b
    Example:
      ctgan-host jobs logs 20261125t130025-a1b2c3
    """
    for line in app.login().job_logs(job):
        print(line)


def _example(*lines: str) -> str:
    """A help paragraph of example invocations; click's \\b keeps each on its own line."""
    return "\n\n\b\nExample:\n" + "\n".join(f"  {line}" for line in lines)


def _delete_command(
    group: click.Group, noun: str, delete_method: str, help_text: str, example: str, metavar: str = "NAME"
) -> None:
    """`<group> delete NAME [--yes]`: confirmed on a terminal, --yes otherwise."""

    @group.command("delete", help=help_text + _example(example))
    @click.argument("name", metavar=metavar)
    @click.option("--yes", is_flag=True, help="do not ask for confirmation")
    @pass_app
    def delete(app: App, name: str, yes: bool) -> None:
        client = app.login()
        _confirm_delete(f"{noun} {name}", yes)
        getattr(client, delete_method)(name)
        ui.out.print(f"Deleted {noun} {name}")


_delete_command(
    jobs,
    "the log of job",
    "delete_job",
    "Remove a finished job's log from the server (its model stays).",
    "ctgan-host jobs delete 20261125t130025-a1b2c3 --yes",
    "ID",
)


def _stored_files_group(
    kind: str, noun: str, list_method: str, table: Callable, delete_method: str, delete_help: str, delete_example: str
) -> click.Group:
    """`models` and `datasets`: list your files on the server, or `delete NAME` one of them."""

    @cli.group(
        kind,
        invoke_without_command=True,
        help=f"List your {noun}s on the server; `{kind} delete NAME` removes one." + _example(f"ctgan-host {kind} --json"),
    )
    @click.option("--json", "as_json", is_flag=True, help="print a JSON list")
    @click.pass_context
    def group(ctx: click.Context, as_json: bool) -> None:
        if ctx.invoked_subcommand is None:
            found = getattr(ctx.find_object(App).login(), list_method)()
            ui.print_json(found) if as_json else ui.out.print(table(found))

    _delete_command(group, noun, delete_method, delete_help, delete_example)
    return group


models = _stored_files_group(
    "models",
    "model",
    "models",
    ui.models_table,
    "delete_model",
    "Delete one of your models (and its metadata) from the server.",
    "ctgan-host models delete loans_20261125t130025_model.gz --yes",
)
datasets = _stored_files_group(
    "datasets",
    "synthetic dataset",
    "datasets",
    ui.datasets_table,
    "delete_dataset",
    "Delete one of your synthetic datasets from the server.",
    "ctgan-host datasets delete loans_20261125t130101_10000_synthetic.csv.gz --yes",
)


def _confirm_delete(what: str, yes: bool) -> None:
    if yes:
        return
    if not ui.stdin_is_terminal():
        raise UsageError(f"deleting {what} needs --yes when stdin is not a terminal")
    if not ui.confirm(f"Delete {what} from the server? This cannot be undone"):
        raise click.Abort()


@cli.command()
@click.argument("model", required=False)
@click.option("--json", "as_json", is_flag=True, help="print the report as one JSON object")
@click.option(
    "--html", "html_file", type=click.Path(dir_okay=False), metavar="FILE", help="also write a self-contained HTML report"
)
@pass_app
def report(app: App, model: str | None, as_json: bool, html_file: str | None) -> None:
    """Show the quality and privacy report the fit stored with MODEL.

    \b
    Example:
      ctgan-host report loans_20261125t130025_model.gz --html loans.html
    """
    client = app.login()
    model = _pick(app, model, client.models, ui.models_table, "Please enter model to load", "MODEL argument")
    _show_report(client.report(model), f"Report for {model}", as_json, html_file)


@cli.command()
@click.argument("real", type=click.Path(exists=True, dir_okay=False))
@click.argument("synthetic", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--holdout",
    "holdout_csv",
    type=click.Path(exists=True, dir_okay=False),
    metavar="HOLDOUT.csv",
    help="rows kept out of training, for the DCR share",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as one JSON object")
@click.option(
    "--html", "html_file", type=click.Path(dir_okay=False), metavar="FILE", help="also write a self-contained HTML report"
)
def evaluate(real: str, synthetic: str, holdout_csv: str | None, as_json: bool, html_file: str | None) -> None:
    """Compare REAL.csv and SYNTH.csv here, on your machine, with the same metrics as the fit report.

    \b
    Example:
      ctgan-host evaluate loans.csv loans_synthetic.csv --holdout loans_holdout.csv
    """
    from .evaluation import evaluate_files

    with ui.status("Evaluating..."):
        result = evaluate_files(Path(real), Path(synthetic), Path(holdout_csv) if holdout_csv else None)
    _show_report(result, f"{Path(synthetic).name} against {Path(real).name}", as_json, html_file)


def _show_report(result: dict[str, Any], title: str, as_json: bool, html_file: str | None) -> None:
    if html_file:
        from ctgan_server.wire import atomic_write_text

        from .html_report import render_html

        atomic_write_text(Path(html_file), render_html(result, title))
    if as_json:
        ui.print_json({key: result.get(key) for key in ui.REPORT_JSON_KEYS})
    else:
        ui.print_report(result, title)
        if html_file:
            ui.out.print(f"Wrote {html_file}")


@cli.command()
@pass_app
def passwd(app: App) -> None:
    """Change your own password on the server: the current one, then the new one twice.

    Without a terminal, give the current password as usual (--password-stdin
    or CTGAN_PASSWORD), then the new one on the next two lines of stdin.

    \b
    Example:
      ctgan-host --user alice passwd
    """
    user, old = app.credentials()
    if ui.stdin_is_terminal():
        new = click.prompt("New password", hide_input=True, confirmation_prompt="Repeat the new password", err=True)
    else:
        new, again = sys.stdin.readline().rstrip("\r\n"), sys.stdin.readline().rstrip("\r\n")
        if not new:
            raise UsageError("no new password on stdin (expected it twice, one per line, after the current one)")
        if new != again:
            raise UsageError("the two new passwords differ")
    client = app.connect(user, old)
    client.change_password(old, new)
    ui.out.print(f"Password changed for {user}")


def _pick(
    app: App, given: str | None, lister: Callable[[], list[dict[str, Any]]], table: Callable, prompt: str, what: str
) -> str:
    if given is not None:
        return given
    if ui.stdin_is_terminal():
        ui.err.print(table(lister()))
    return app.ask(prompt, what)


@cli.command()
@click.argument("model", required=False)
@click.option("--rows", type=ROWS, help="number of synthetic rows (asked on a terminal)")
@click.option("--out", type=click.Path(file_okay=False), help="folder for the CSV (default: [paths] synthetic_output)")
@click.option(
    "--condition",
    "conditions",
    multiple=True,
    metavar="COL=VALUE",
    help="keep only rows where discrete COL is VALUE (repeatable)",
)
@click.option("--seed", type=SEED, help="the same model and seed give the same file")
@pass_app
def sample(app: App, model: str | None, rows: int | None, out: str | None, conditions: tuple[str, ...], seed: int | None) -> None:
    """Sample synthetic rows from MODEL; store them on the server and write a CSV here.

    \b
    Example:
      ctgan-host sample loans_20261125t130025_model.gz --rows 10000 --condition Home=rent
    """
    wanted = _parse_conditions(conditions)
    client = app.login()
    model = _pick(app, model, client.models, ui.models_table, "Please enter model to load", "MODEL argument")
    if rows is None:
        rows = app.ask("Please enter sampling size", "--rows", type=ROWS)
    job: str | None = None

    def on_event(event: dict[str, Any]) -> None:
        # A sample over the server's sample_job_rows runs as a job: its rows
        # count up as the job writes them, before the file streams down.
        nonlocal job
        if event.get("event") == "job":
            job = event["job"]
            print(f"Sampling as job {job}; it runs on if this connection drops ({_prog()} jobs follow {job})", file=sys.stderr)
        elif event.get("event") == "sample":
            progress(event["rows"])

    try:
        with ui.TransferProgress(f"sample {model}", total=rows, rows=True) as progress:
            path, stored = client.sample_to_file(
                model, rows, out, conditions=wanted, seed=seed, on_rows=progress, on_event=on_event
            )
    except KeyboardInterrupt:
        if job is None:
            raise
        raise Detached(job, _prog()) from None
    ui.out.print(f"Wrote {path} ({rows} rows); stored on the server as {stored['name']}")


def _parse_conditions(given: tuple[str, ...]) -> dict[str, str]:
    wanted: dict[str, str] = {}
    for item in given:
        column, sep, value = item.partition("=")
        if not sep or not column:
            raise UsageError(f"--condition takes COL=VALUE, not {item!r}")
        if column in wanted and wanted[column] != value:
            raise UsageError(f"--condition gives {column} two values ({wanted[column]!r} and {value!r}); no row can match both")
        wanted[column] = value
    return wanted


@cli.command()
@click.argument("dataset", required=False)
@click.option("--out", type=click.Path(file_okay=False), help="folder for the CSV (default: [paths] synthetic_output)")
@pass_app
def download(app: App, dataset: str | None, out: str | None) -> None:
    """Bring back a stored synthetic DATASET as a plain CSV.

    \b
    Example:
      ctgan-host download loans_20261125t130101_10000_synthetic.csv.gz --out ./shared
    """
    client = app.login()
    dataset = _pick(
        app, dataset, client.datasets, ui.datasets_table, "Please enter synthetic data to download", "DATASET argument"
    )
    with ui.TransferProgress(f"download {dataset}") as progress:
        path = client.download_to_file(dataset, out, on_progress=progress)
    ui.out.print(f"Wrote {path}")


@cli.command()
@pass_app
def doctor(app: App) -> int:
    """Ask the server whether it is healthy: one line per check, exit 1 when any fails.

    The checks any user may run: libraries, CUDA devices, data_dir writable
    and free space, and with the Slurm executor, Slurm answering and data_dir
    on a filesystem its nodes share.  Send a FAIL line to the server's admin.

    \b
    Example:
      ctgan-host --user alice doctor
    """
    checks = app.login().doctor()
    for check in checks:
        print(check_line(check["name"], check["ok"], check["detail"]))  # not rich: a detail may hold [service] and the like
    return 0 if all(check["ok"] for check in checks) else 1


@cli.command()
@click.option("--epochs", type=EPOCHS, default=DEMO_EPOCHS, show_default=True, help="training epochs")
@pass_app
def demo(app: App, epochs: int) -> None:
    """Fit the bundled penguins data, sample from it and download the result.

    \b
    Example:
      ctgan-host demo --epochs 50
    """
    from .demo import ensure_local_demo_user, run_demo

    server = app.config.server
    user, password = ensure_local_demo_user(server.server_dir) if server.is_local else app.credentials()
    run_demo(app.connect(user, password), DEMO_CSV, epochs, app.config.synthetic_output)


def main(argv: list[str] | None = None, prog_name: str | None = None) -> int:
    """The `ctgan-host` console script; ``prog_name`` None lets click name the program as it was invoked."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name=prog_name, standalone_mode=False)
        return code if isinstance(code, int) else 0
    except CtganError as exc:
        if debug:
            traceback.print_exc()
        print(f"Error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except click.exceptions.Abort:
        print("Aborted.", file=sys.stderr)
        return 1
    except Detached as exc:
        print(
            f"Detached; job {exc.job} keeps running on the server. Reattach with: {exc.prog} jobs follow {exc.job}",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        # Usage errors get one line, like every other error, not click's usage block.
        print(f"Error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(f"Error: unexpected {type(exc).__name__}: {exc} (run with --debug for details)", file=sys.stderr)
        return 1
