"""`arrears ingest sheet|file|rejects|runs`: drive the ingest service over its HTTP API.

The service URL comes from `--url` or `ARREARS_INGEST_URL` (default `http://127.0.0.1:8001`, the ingest
service's default port). Every call needs an API key, from `--api-key` or `ARREARS_API_KEY`, sent as
`Authorization: Bearer <key>`: `sheet` and `file` need the permission `ingest.run` (supervisor, admin or
service), `rejects` and `runs` need `ingest.read` (supervisor or admin). `arrears up` writes its admin key
to `<data dir>/admin-api-key`; `arrears keys create` makes narrower ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import typer
from arrears_shared.money import format_amount

from arrears_cli.progress import ProgressOpt, progress, wanted

DEFAULT_URL = "http://127.0.0.1:8001"
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
UPLOAD_CHUNK = 256 * 1024

ingest_app = typer.Typer(
    help="PME master sheet ingest: run the sheet now, upload a CSV/XLSX file, list rejects and runs. "
    "Every command needs an API key (--api-key or ARREARS_API_KEY): sheet and file need a supervisor, "
    "admin or service key; rejects and runs a supervisor or admin key.",
    no_args_is_help=True,
)

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="ARREARS_INGEST_URL", help="Base URL of the ingest service")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer")]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="ARREARS_API_KEY",
        show_envvar=True,
        help="API key (ark_...) sent as 'Authorization: Bearer <key>'; `arrears up` writes its admin key "
        "to <data dir>/admin-api-key, `arrears keys create` makes others",
    ),
]


def _client(url: str, api_key: str | None, timeout: float = 600) -> httpx.Client:
    headers = {"Authorization": f"Bearer {api_key.strip()}"} if api_key and api_key.strip() else {}
    return httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers)


def _fail(r: httpx.Response) -> None:
    if r.status_code == 401:
        typer.echo(
            "error 401: the ingest service needs a valid API key: pass --api-key or set ARREARS_API_KEY",
            err=True,
        )
        raise typer.Exit(1)
    try:
        detail: Any = r.json()
        detail = detail.get("detail", detail.get("error", detail)) if isinstance(detail, dict) else detail
    except ValueError:
        detail = r.text[:500]
    typer.echo(f"error {r.status_code}: {detail}", err=True)
    raise typer.Exit(1)


def _summary(run: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(run, indent=2))
    else:
        typer.echo(
            f"run {run['id']} ({run['source']}, {run['trigger']}): {run['status']}  rows={run['rows']} "
            f"accepted={run['accepted']} rejected={run['rejected']} unchanged={run['unchanged']} "
            f"created={run['created']} updated={run['updated']} removed={run['removed']} "
            f"warnings={run['warnings']}"
        )
        if run.get("error"):
            typer.echo(f"error: {run['error']}", err=True)
    if run["status"] != "succeeded":
        raise typer.Exit(1)


def _request(url: str, api_key: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
    try:
        with _client(url, api_key) as c:
            return c.request(method, path, **kw)
    except httpx.HTTPError as e:
        typer.echo(f"cannot reach the ingest service at {url}: {e}", err=True)
        raise typer.Exit(2) from None


@ingest_app.command()
def sheet(url: UrlOpt = DEFAULT_URL, api_key: ApiKeyOpt = None, as_json: JsonOpt = False) -> None:
    """Read the PME master sheet now (the poll schedule continues as configured). Needs a supervisor,
    admin or service API key."""
    r = _request(url, api_key, "POST", "/ingest/sheet")
    if r.status_code != 200:
        _fail(r)
    _summary(r.json(), as_json)


@ingest_app.command("file")
def file_(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV or XLSX file")
    ],
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="merge: create/update the file's accounts; replace: the file is the whole master sheet "
            "(accounts absent from it are removed)",
        ),
    ] = "merge",
    worksheet: Annotated[str | None, typer.Option(help="XLSX worksheet (default: the first)")] = None,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
    show_progress: ProgressOpt = None,
) -> None:
    """Upload a CSV/XLSX export of the PME master sheet (works while the sheet is unavailable). Needs a
    supervisor, admin or service API key."""
    if mode not in ("merge", "replace"):
        raise typer.BadParameter("--mode must be merge or replace")
    kind: Literal["xlsx", "csv"] = "xlsx" if path.suffix.lower() in (".xlsx", ".xlsm") else "csv"
    params = {"filename": path.name, "mode": mode} | ({"worksheet": worksheet} if worksheet else {})
    size = path.stat().st_size
    with progress(f"uploading {path.name}", size, enabled=wanted(show_progress), unit="bytes") as (
        advance,
        describe,
    ):

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as f:
                while chunk := f.read(UPLOAD_CHUNK):
                    yield chunk
                    advance(len(chunk))
            # the service validates and publishes every row before it answers
            describe(f"{path.name} sent, checking rows")

        r = _request(
            url,
            api_key,
            "POST",
            "/ingest/upload",
            params=params,
            content=chunks(),
            # a declared length: the service caps bodies by it, and httpx then sends no chunked encoding
            headers={
                "content-type": XLSX_MEDIA if kind == "xlsx" else "text/csv",
                "content-length": str(size),
            },
        )
    if r.status_code == 422 and "status" in r.json():
        _summary(r.json(), as_json)
    if r.status_code != 200:
        _fail(r)
    _summary(r.json(), as_json)


@ingest_app.command()
def rejects(
    source: Annotated[str | None, typer.Option(help="sheet, upload or payment (default: all)")] = None,
    csv_path: Annotated[
        str | None,
        typer.Option("--csv", help="Write the CSV report (highest balance first) here; - = stdout"),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Rows to list (without --csv)")] = 50,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Current rejects, sorted by impact (balance), with row, column, masked value and reason. Needs a
    supervisor or admin API key."""
    params = {"source": source} if source else {}
    if csv_path is not None:
        r = _request(url, api_key, "GET", "/ingest/rejects.csv", params=params)
        if r.status_code != 200:
            _fail(r)
        if csv_path == "-":
            typer.echo(r.text, nl=False)
        else:
            Path(csv_path).write_text(r.text, encoding="utf-8")
            typer.echo(f"wrote {max(r.text.count(chr(10)) - 1, 0)} reject(s) to {csv_path}", err=True)
        return
    r = _request(url, api_key, "GET", "/ingest/rejects", params=params | {"limit": limit})
    if r.status_code != 200:
        _fail(r)
    data = r.json()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for i in data["items"]:
        bal = "" if i["balance_minor"] is None else format_amount(i["balance_minor"], i["currency"])
        typer.echo(
            f"{i['source']:<7} row {i['row_number']:<6} {i['account_id'] or '-':<20} {bal:>16}  "
            f"{i['column'] or '-'}: {i['reason']}"
        )
    typer.echo(f"{len(data['items'])} of {data['total']} reject(s)", err=True)


@ingest_app.command()
def runs(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    url: UrlOpt = DEFAULT_URL,
    api_key: ApiKeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The latest ingest runs (sheet and uploads), newest first. Needs a supervisor or admin API key."""
    r = _request(url, api_key, "GET", "/ingest/runs", params={"limit": limit})
    if r.status_code != 200:
        _fail(r)
    items = r.json()["items"]
    if as_json:
        typer.echo(json.dumps(items, indent=2))
        return
    for run in items:
        degraded = (
            f"degraded (waited {run.get('quota_waited_s', 0):.1f} s for the Sheets quota)  "
            if run.get("degraded")
            else ""
        )
        typer.echo(
            f"{run['started']}  {run['source']:<6} {run['trigger']:<5} {run['status']:<9} rows={run['rows']} "
            f"created={run['created']} updated={run['updated']} removed={run['removed']} "
            f"rejected={run['rejected']}  {degraded}{run.get('error') or ''}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(ingest_app, name="ingest")
