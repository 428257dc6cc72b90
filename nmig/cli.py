"""The `nmig` command line: parse options, call the library, print. No migration logic lives here."""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from nmig import __version__
from nmig.environment import DISK_ERRNOS, describe_os_error
from nmig.errors import NmigError, printable
from nmig.secrets import redact


def _echo_lines(text: str) -> None:
    """Print a multi-line rendering with names from the bundle or a server escaped, line by line."""
    click.echo("\n".join(printable(line) for line in text.split("\n")))


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn NmigError into one line on stderr and its exit code; never print a token."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NmigError as exc:
            click.echo(f"nmig: error: {printable(redact(str(exc)))}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            if exc.errno not in DISK_ERRNOS:
                raise
            click.echo(f"nmig: error: {printable(redact(describe_os_error(exc)))}", err=True)  # a full disk, a read-only one
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("nmig: interrupted; re-run the same command to resume", err=True)
            sys.exit(130)

    return wrapper


def _use_ca_bundle(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    from nmig.trust import use_ca_bundle

    if value is not None:
        try:
            use_ca_bundle(value)
        except NmigError as exc:
            raise click.BadParameter(str(exc)) from None


class _LocationType(click.ParamType):
    """A bundle folder, or a URL on object storage (s3://, gs://, az://, file://): a Path or the URL string."""

    name = "DIR|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from nmig.schema import as_location

        return as_location(value) if isinstance(value, str) else value


_LOCATION = _LocationType()


def _parse_storage_options(ctx: click.Context, param: click.Parameter, value: str | None) -> dict[str, Any] | None:
    from nmig.schema import parse_storage_options

    try:
        return parse_storage_options(value) or None
    except NmigError as exc:
        raise click.BadParameter(str(exc)) from None


# Every command that reads or writes a bundle takes it; a URL bundle's credentials may come from here or from
# the store's own environment variables (AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...). The values are never shown.
_storage_options_option = click.option(
    "--storage-options",
    envvar="NMIG_STORAGE_OPTIONS",
    callback=_parse_storage_options,
    metavar="JSON|K=V,...",
    help="For a bundle URL: fsspec's options, as pandas takes them, e.g. "
    "'{\"client_kwargs\": {\"endpoint_url\": \"http://minio:9000\"}}' or key=...,secret=... (default: $NMIG_STORAGE_OPTIONS).",
)


# The commands that reach a Neptune server take it; nmig/trust.py says how it reaches each client.
_ca_bundle_option = click.option(
    "--ca-bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    expose_value=False,
    callback=_use_ca_bundle,
    help="PEM file of the CAs to trust for HTTPS (e.g. a private CA), in every client; the same as setting REQUESTS_CA_BUNDLE and SSL_CERT_FILE to it.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nmig")
def main() -> None:
    """Migrate Neptune Legacy (2.x) projects to Neptune 3.x in two phases.

    `nmig export` reads a 2.x project into a bundle on disk; `nmig import` replays the bundle into 3.x,
    possibly on another machine and days later; `nmig verify` proves the result. `nmig demo` rehearses the
    whole path against loopback emulators of both services.
    """


@main.group()
def emulate() -> None:
    """Loopback emulators of Neptune 2.x and 3.x for rehearsals and tests (127.0.0.1 only)."""


def _set_timeout(ctx: click.Context, param: click.Parameter, value: float) -> None:
    from nmig import reachability

    reachability.timeout_s = value


# --timeout: how long nmig tries to reach a service before saying it cannot (nmig.reachability).
_timeout_option = click.option(
    "--timeout", type=click.FloatRange(1), default=30.0, show_default=True, expose_value=False, callback=_set_timeout,
    help="Seconds to keep trying to reach the service before giving up with one line (raise for slow links).",
)


@main.command("export")
@click.option("--project", envvar="NEPTUNE_PROJECT", help="WORKSPACE/PROJECT (default: $NEPTUNE_PROJECT).")
@click.option("--out", "out", required=True, type=_LOCATION, help="Bundle folder to write, or a URL on object storage (s3://BUCKET/PREFIX, gs://, az://, file://); with --workspace, the root folder (local).")
@_storage_options_option
@click.option("--workspace", default=None, help="Export every project of this workspace instead (one bundle per project under --out, and an index nmig-root.json).")
@click.option("--projects", default=None, help="With --workspace: only projects whose name matches this regex in full.")
@click.option("--exclude-projects", default=None, help="With --workspace: leave out projects whose name matches this regex in full.")
@click.option("--api-token", envvar="NEPTUNE_API_TOKEN", help="2.x API token (default: $NEPTUNE_API_TOKEN).")
@click.option("--query", default=None, help="NQL filter on runs, as in the 2.x app.")
@click.option(
    "--runs", multiple=True, help="Run ids, custom run ids, or regexes matching one in full: --runs A B or --runs A --runs B."
)
@click.option("--include-trashed", is_flag=True, help="Also export trashed runs and models.")
@click.option(
    "--no-models", is_flag=True, help="Skip models and model versions (exported by default; --query/--runs select runs only)."
)
@click.option("--max-workers", type=click.IntRange(1, 64), default=16, show_default=True, help="Entities in parallel (with --workspace: in total, shared by the projects exported at once).")
@click.option(
    "--shard", default=None,
    help="I/N: export only the I-th of N stable partitions by id (1/N..N/N); the N shards may write one --out at once.",
)
@click.option("--update", is_flag=True, help="Also re-export entities modified in 2.x since they were exported.")
@_ca_bundle_option
@click.option("--quiet", is_flag=True, help="No progress bars; only errors and the final line.")
@click.argument("more_runs", nargs=-1, metavar="")
@_timeout_option
@friendly_errors
def export_command(no_models: bool, more_runs: tuple[str, ...], runs: tuple[str, ...], shard: str | None, **options: Any) -> None:
    """Export a Neptune 2.x project into a bundle folder (resumable: re-run to finish or update it).

    With --workspace WS instead of --project, every project of WS (chosen by --projects / --exclude-projects)
    goes into its own bundle OUT/<project>/, listed in OUT/nmig-root.json; `nmig import`, `verify`, `inspect`
    take OUT as they take one bundle. Several projects are exported at once within --max-workers.
    """
    from nmig.exporter import ExportOptions, export_project, export_workspace
    from nmig.sharding import parse_shard

    if more_runs and not runs:
        raise NmigError(f"unexpected argument {more_runs[0]!r} (run ids and patterns go after --runs)")
    if not options["workspace"] and (options["projects"] or options["exclude_projects"]):
        raise NmigError("--projects and --exclude-projects choose projects of a --workspace")
    from nmig.reachability import require_reachable

    require_reachable(options["api_token"], "2.x")
    # `--runs A B C` as documented, as well as `--runs A --runs B`
    export_options = ExportOptions(**options, runs=runs + more_runs, models=not no_models, shard=parse_shard(shard))
    if options["workspace"]:
        if options["project"] and click.get_current_context().get_parameter_source("project") != click.core.ParameterSource.ENVIRONMENT:
            raise NmigError("--workspace and --project exclude each other: export one project or a whole workspace")
        workspace_result = export_workspace(dataclasses.replace(export_options, project=None))
        for line in workspace_result.lines():
            click.echo(f"  {redact(line, options['api_token'])}", err=options["quiet"])
        click.echo(f"nmig export: {workspace_result.summary()} -> {options['out']}", err=options["quiet"])
        workspace_result.raise_for_failures()
        return
    result = export_project(export_options)
    click.echo(f"nmig export: {result.summary()} -> {options['out']}", err=options["quiet"])  # the final line
    for line in result.incomplete_lines():
        click.echo(f"  {redact(line, options['api_token'])}", err=True)
    result.raise_for_failures()


# Options both emulators take, handed to serve_legacy / serve_neptune3 as keyword arguments.
_SERVING_OPTIONS = (
    click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind."),
    click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535), help="Port; 0 picks a free one."),
    click.option("--fail-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="Share of requests answered 500/503."),
    click.option("--throttle-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="Share answered 429 + Retry-After."),
    click.option("--latency-ms", default=0, show_default=True, type=click.IntRange(0), help="Delay added to every answer."),
    click.option("--seed", default=0, show_default=True, type=int, help="Seed making the faults deterministic."),
    click.option("--tls", is_flag=True, help="Serve HTTPS with a certificate from a private CA; the ready line's \"ca_file\" names the CA to give clients (--ca-bundle)."),
)


def _serving_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_SERVING_OPTIONS):
        command = option(command)
    return command


def _serve_until_stopped(what: str, server: Any) -> None:
    """Enter an emulator's context manager, print its ready line and serve until SIGINT/SIGTERM."""
    import contextlib

    from nmig.emulators import print_and_wait

    with contextlib.ExitStack() as stack:
        try:
            info = stack.enter_context(server)
        except (ValueError, OSError, RuntimeError) as exc:
            raise NmigError(f"cannot start the {what} emulator: {exc}") from None
        print_and_wait(info)


@emulate.command("legacy")
@click.option("--fixture", "fixture_path", required=True, type=click.Path(dir_okay=False), help="Fixture JSON (format v1).")
@_serving_options
@click.option("--token-ttl", default=3600, show_default=True, type=click.FloatRange(min=0.1), help="Access-token lifetime in seconds.")
@click.option(
    "--series-paging",
    type=click.Choice(["offset", "skipToStep"]),
    default="offset",
    show_default=True,
    help="Float series paged by offset (as neptune 1.14 asks) or by skipToStep (as Neptune's published specs declare).",
)
@click.option("--zip-prepare-seconds", default=0.0, show_default=True, type=click.FloatRange(min=0), help="How long a FileSet zip stays 'not ready yet'.")
@friendly_errors
def emulate_legacy(fixture_path: str, **serving: Any) -> None:
    """Serve a fixture as a Neptune 2.x (legacy) service that the unmodified `neptune` client reads from.

    For rehearsing an export and for tests: it speaks the read API of Neptune 2.x over plain HTTP (HTTPS with
    --tls) on a loopback address, with API-token auth and expiring access tokens, and can inject faults. When
    ready it prints one JSON line {"url", "api_token", "workspace", "env", "ca_file"} and serves until Ctrl-C /
    SIGTERM; a client process needs the settings in "env". The fixture format is described in
    docs/legacy-fixture-format.md, what it serves and on what evidence in docs/legacy-emulator.md.
    """
    from nmig.emulators.legacy import serve_legacy

    _serve_until_stopped("legacy", serve_legacy(fixture_path, warm=True, **serving))


@emulate.command("neptune3")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder keeping everything acknowledged across restarts; a temporary one when omitted.")
@click.option("--workspace", default="demo", show_default=True, help="The one workspace that exists.")
@click.option(
    "--storage-provider",
    type=click.Choice(["aws", "azure", "gcp"]),
    default="aws",
    show_default=True,
    help="Which kind of signed URL file uploads and downloads get, each answered in that provider's protocol.",
)
@_serving_options
@friendly_errors
def emulate_neptune3(data_dir: str | None, workspace: str, storage_provider: str, **serving: Any) -> None:
    """Serve a Neptune 3.x service that the unmodified `neptune-scale` and `neptune-query` clients use.

    For rehearsing an import and for tests: ingest, request statuses, file storage and the read API over
    plain HTTP (HTTPS with --tls) on a loopback address, with state in SQLite under --data-dir. When ready it
    prints one JSON line {"url", "api_token", "workspace", "env", "ca_file"} and serves until Ctrl-C / SIGTERM.
    See docs/neptune3-emulator.md.
    """
    from nmig.emulators.neptune3 import serve_neptune3

    server = serve_neptune3(data_dir=data_dir, workspace=workspace, storage_provider=storage_provider, **serving)
    _serve_until_stopped("neptune3", server)


# Options `nmig import`, `verify` and `migrate` share. These three commands name their parameters as the
# fields of their library's options dataclass, so the parameters are handed over as they are.
_target_token_option = click.option("--api-token", envvar="NEPTUNE_API_TOKEN", help="3.x API token (default: $NEPTUNE_API_TOKEN).")
_bundle_runs_option = click.option(
    "--runs", multiple=True, help="Legacy run id, custom run id, or a regex matching one in full (repeatable)."
)
_bundle_argument = click.argument("bundle_dir", type=_LOCATION)


def _local_file(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    from nmig.schema import is_url

    if value is not None and is_url(value):
        raise click.BadParameter("a file on this machine, not a URL")
    return Path(value) if value is not None else None

_project_map_option = click.option(
    "--project-map",
    multiple=True,
    help="For a workspace root (from `nmig export --workspace`): LEGACY_WS/PROJECT=TARGET_WS/PROJECT, or a file "
    "of such lines (# comments); repeatable. Projects not mapped keep their name in the workspace --project names.",
)


def _file_option(*names: str, help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(*names, type=click.Path(dir_okay=False), callback=_local_file, default=None, help=help)


_experiments_option = click.option(
    "--experiments",
    type=click.Choice(["by-name", "none"]),
    default="by-name",
    show_default=True,
    help="by-name: runs sharing a legacy name form one 3.x experiment, headed by the latest-created (the legacy "
    "default name 'Untitled' forms none); none: every run a plain run. verify needs the same choice.",
)


def _shard_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--shard",
        default=None,
        help=f"I/N: {what} only the I-th of N partitions of the bundle's runs (1/N..N/N), so N machines share one "
        "bundle. Runs of one experiment stay in one shard (hash of the experiment name, else of the run id), so "
        "each experiment's head is decided by one shard; shard 1/N also takes the project-metadata run and "
        "--models-as-runs. The state, report and lock files carry the shard (...shard-1-of-4.json); a later "
        "import with or without --shard reads every shard's state, so each run is imported once.",
    )


_models_as_runs_option = click.option(
    "--models-as-runs",
    is_flag=True,
    help="Also import every model and model version as a run (tags model:<id>, model_version:<id>; stage and "
    "model id under model_registry/). verify needs the same flag.",
)


@main.command("import")
@_bundle_argument
@click.option("--project", envvar="NEPTUNE_PROJECT", help="WORKSPACE/PROJECT in 3.x, or WORKSPACE to keep the legacy project's name there (default: $NEPTUNE_PROJECT). For a workspace root: WORKSPACE only.")
@_project_map_option
@_target_token_option
@_bundle_runs_option
@click.option("--max-workers", type=click.IntRange(1, 64), default=8, show_default=True, help="Runs imported at once (for a workspace root: in total, shared by the projects imported at once).")
@click.option("--dry-run", is_flag=True, help="Print the plan (runs, target ids, remapped paths, what is skipped or adjusted); write nothing.")
@click.option("--no-create-project", is_flag=True, help="Fail instead of creating a missing target project.")
@click.option(
    "--visibility",
    type=click.Choice(["private", "public", "workspace"]),
    default=None,
    help="Visibility of a project nmig creates, for targets whose plan refuses the legacy one (default: the legacy project's).",
)
@_experiments_option
@_models_as_runs_option
@click.option(
    "--sync-trash",
    is_flag=True,
    help="Runs trashed in 2.x after their export (found by `nmig export --update`) are moved to the 3.x project's "
    "trash (never imported if they were not yet). Without it they are only reported and stay in 3.x.",
)
@_shard_option("import")
@click.option("--state", "state_path", type=_LOCATION, default=None, help="State file, a path or a URL (default: inside BUNDLE_DIR, on the store for a bundle URL, per project; with --shard, tagged with it); the report and sync records go next to it.")
@_storage_options_option
@_ca_bundle_option
@click.option("--quiet", is_flag=True, help="No progress bars; only errors and the final line.")
@_timeout_option
@friendly_errors
def import_command(no_create_project: bool, shard: str | None, **options: Any) -> None:
    """Replay a bundle into a Neptune 3.x project, exactly once (re-run the same command to resume).

    Runs imported before whose bundle was re-exported since (`nmig export --update`) are brought up to date:
    new points appended once, configs, tags and files updated; what 3.x cannot change is reported.

    BUNDLE_DIR may also be a workspace root (`nmig export --workspace`): each project's bundle then goes into
    its own 3.x project, named by --project-map where it names the legacy project, else the legacy project's
    name in the workspace --project WORKSPACE. Several projects are imported at once within --max-workers;
    one line per project says which legacy project went where.
    """
    from nmig.importer import ImportOptions, import_root, render_plan, render_root_plan, run_import
    from nmig.reachability import require_reachable
    from nmig.schema import is_root
    from nmig.sharding import parse_shard

    parsed_shard = parse_shard(shard)  # a bad --shard is refused before the service is asked
    if not options["dry_run"]:
        require_reachable(options["api_token"], "3.x")
    import_options = ImportOptions(**options, create_project=not no_create_project, shard=parsed_shard)
    if is_root(options["bundle_dir"], options["storage_options"]):
        root_result = import_root(import_options)
        if options["dry_run"]:
            _echo_lines(render_root_plan(root_result))
            return
        for line in root_result.lines():
            click.echo(f"  {printable(line)}", err=True)
        click.echo(f"nmig import: {root_result.summary()}", err=True)
        root_result.raise_for_failures()
        return
    result = run_import(import_options)
    if options["dry_run"]:
        _echo_lines(render_plan(result))
        return
    click.echo(f"nmig import: {result.summary()}", err=True)  # the final line, also under --quiet
    result.raise_for_failures()


@main.command("inspect")
@click.argument("bundle_dir", type=_LOCATION)
@click.argument("run_id", required=False)
@_storage_options_option
@click.option("--check", is_flag=True, help="Verify every checksum and file; exit 1 on any problem or incomplete entity.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@friendly_errors
def inspect_command(
    bundle_dir: Path | str, run_id: str | None, check: bool, as_json: bool, storage_options: dict[str, Any] | None
) -> None:
    """Summarise a bundle, or detail one run (RUN_ID: a sys/id of a run, model or model version).

    BUNDLE_DIR may be a workspace root: each project's bundle is summarised, then the totals.
    """
    import json

    from nmig.errors import PartialFailure
    from nmig.schema import (
        Bundle,
        describe_entity,
        find_entity,
        is_root,
        read_root,
        render_entity,
        render_root_summary,
        render_summary,
        summarize,
        summarize_root,
    )

    if is_root(bundle_dir, storage_options):
        if run_id is not None:
            raise NmigError(f"{bundle_dir} is a workspace root; name the project's bundle: nmig inspect {bundle_dir}/PROJECT {run_id}")
        root_report = summarize_root(read_root(bundle_dir, storage_options), check=check, progress=not as_json)
        if as_json:
            click.echo(json.dumps(root_report, indent=1, default=str))
        else:
            _echo_lines(render_root_summary(root_report))
        totals = root_report["totals"]
        if check and (totals["problems"] or totals["incomplete"]):
            raise PartialFailure(f"check failed: {totals['problems']} problem(s), {totals['incomplete']} incomplete")
        return
    bundle = Bundle(bundle_dir, storage_options)
    if run_id is None:
        report = summarize(bundle, check=check, progress=not as_json)
        incomplete = len(report["incomplete"])
    else:
        report = describe_entity(find_entity(bundle, run_id), check=check)
        incomplete = 0 if report["complete"] else 1
    if as_json:
        click.echo(json.dumps(report, indent=1, default=str))
    else:
        _echo_lines(render_summary(report) if run_id is None else render_entity(report))
    if check and (report["problems"] or incomplete):
        raise PartialFailure(f"check failed: {len(report['problems'])} problem(s), {incomplete} incomplete")


@main.command("verify")
@_bundle_argument
@click.option("--project", default=None, help="WORKSPACE/PROJECT in 3.x that the bundle was imported into (for a workspace root: WORKSPACE, as given to `nmig import`).")
@_project_map_option
@_target_token_option
@_bundle_runs_option
@click.option("--sample", type=click.IntRange(1), default=None, help="Check N evenly spread points per series (first and last included) instead of all; point counts are then not checked.")
@_file_option("--report", help="Also write the result as JSON to this file.")
@click.option("--import-report", type=_LOCATION, default=None, help="The import report, a path or a URL, when `nmig import --state` put it outside BUNDLE_DIR.")
@_storage_options_option
@_experiments_option
@_models_as_runs_option
@click.option("--max-workers", type=click.IntRange(1, 64), default=8, show_default=True, help="Runs checked at once.")
@_shard_option("verify")
@_ca_bundle_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_timeout_option
@friendly_errors
def verify_command(shard: str | None, **options: Any) -> None:
    """Read a 3.x project back with neptune-query and compare it with the bundle; exit 0 only if all matches.

    BUNDLE_DIR may be a workspace root: every project is verified against the target `nmig import` gave it
    (same --project WORKSPACE and --project-map), with a table per project and a line per project at the end.

    The import report and every shard's report next to it say what the import adjusted on purpose. With
    --shard, --report is tagged with the shard; a final verify without --shard checks every run.
    """
    from nmig.importer import VerifyOptions, render_root_verify, render_verify, verify_bundle, verify_root
    from nmig.reachability import require_reachable
    from nmig.schema import is_root
    from nmig.sharding import parse_shard

    parsed_shard = parse_shard(shard)
    require_reachable(options["api_token"], "3.x")
    if is_root(options["bundle_dir"], options["storage_options"]):
        root_result = verify_root(VerifyOptions(**options, shard=parsed_shard))
        _echo_lines(render_root_verify(root_result))
        root_result.raise_for_differences(options["report"])
        return
    result = verify_bundle(VerifyOptions(**options, shard=parsed_shard))
    _echo_lines(render_verify(result))
    result.raise_for_differences(result.report_path)


@main.command("migrate")
@click.option("--from", "source_project", default=None, help="WORKSPACE/PROJECT in Neptune 2.x (or --workspace).")
@click.option("--workspace", default=None, help="Migrate every project of this 2.x workspace (chosen by --projects / --exclude-projects) instead of one --from project; --out is then a workspace root and --to a 3.x workspace.")
@click.option("--projects", default=None, help="With --workspace: a regex the project names must match in full.")
@click.option("--exclude-projects", default=None, help="With --workspace: a regex of project names (in full) to leave out.")
@click.option("--to", "target_project", required=True, help="WORKSPACE/PROJECT in Neptune 3.x (created when missing); with --workspace a 3.x WORKSPACE, where each project keeps its name unless --project-map says otherwise.")
@_project_map_option
@click.option("--out", "out", required=True, type=_LOCATION, help="Bundle folder (kept: it is the archive, the resume point and what `nmig verify` reads).")
@click.option("--legacy-token", envvar="NEPTUNE_LEGACY_API_TOKEN", help="2.x API token (default: $NEPTUNE_LEGACY_API_TOKEN).")
@_target_token_option
@click.option("--query", default=None, help="NQL filter on runs, as in the 2.x app.")
@click.option("--runs", multiple=True, help="Run id, custom run id, or a regex matching one in full (repeatable).")
@click.option("--include-trashed", is_flag=True, help="Also export and import trashed runs.")
@click.option("--update", is_flag=True, help="Cut-over: re-export runs modified in 2.x since their export and bring the imported runs up to date (as `nmig export --update` then `nmig import`).")
@click.option("--sync-trash", is_flag=True, help="With --update: runs trashed in 2.x since their export are moved to 3.x's trash too (as `nmig import --sync-trash`).")
@click.option("--max-workers", type=click.IntRange(1, 64), default=4, show_default=True, help="Runs imported in parallel; the export, the faster half, gets a quarter of them (at least 2).")
@_experiments_option
@_models_as_runs_option
@_ca_bundle_option
@click.option("--quiet", is_flag=True, help="No progress bar; only errors and the final line.")
@_timeout_option
@friendly_errors
def migrate_command(**options: Any) -> None:
    """Export from 2.x and import into 3.x at once: each run is imported as soon as its export is complete.

    The same as `nmig export` followed by `nmig import` (same bundle, state file and report; re-run to resume).

    With --workspace WS --to WS3: every chosen project of WS, each into its bundle OUT/<project>/ (the root
    `nmig export --workspace` writes) and its 3.x project (--project-map, else the same name in WS3), several
    at once within --max-workers; one line per project says where it went.
    """
    from nmig.migrate import MigrateOptions, migrate, migrate_workspace
    from nmig.reachability import require_reachable

    require_reachable(options["legacy_token"], "2.x")
    require_reachable(options["api_token"], "3.x")
    if options["workspace"] is not None:
        root_result = migrate_workspace(MigrateOptions(**options))
        for line in root_result.lines():
            click.echo(f"  {printable(line)}", err=True)
        click.echo(root_result.final_line(), err=options["quiet"])
        root_result.raise_for_failures()
        return
    if options["source_project"] is None:
        raise NmigError("nmig migrate needs --from WORKSPACE/PROJECT, or --workspace WS for a whole workspace")

    result = migrate(MigrateOptions(**options))
    click.echo(result.final_line(), err=options["quiet"])  # the final line
    result.raise_for_failures()


@main.command("demo")
@click.option("--keep", type=click.Path(file_okay=False), default=None, help="Work in this new or empty folder and keep it (bundle, 3.x data, verify report).")
@friendly_errors
def demo_command(keep: str | None) -> None:
    """Rehearse a whole migration on this machine: both services emulated on loopback, a sample 2.x project,
    then the real `nmig export`, `inspect`, `import` and `verify`, ending with a side-by-side table."""
    from pathlib import Path

    from nmig.demo import run_demo
    from nmig.errors import PartialFailure

    if run_demo(Path(keep) if keep else None, click.echo) != 0:
        raise PartialFailure("the demo's verify found differences (see the table above)")


if __name__ == "__main__":
    main()
