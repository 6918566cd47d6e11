"""`vz view`: browse a store in a web browser, served on loopback or written as a static site.

vz view runs/chatterbot.zarr [--port 8765] [--host 127.0.0.1] [--aggregate DIR]
vz view runs/chatterbot.zarr --build site/ [--limit 200] [--store-url https://bucket.s3.amazonaws.com/run.zarr]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.cli.common import StorageOption, fail, storage_options

__all__ = ["view_command", "view_main"]


def view_command(
    store: Annotated[str, typer.Argument(help="store path or fsspec URL")],
    port: Annotated[int, typer.Option(help="port to listen on (0: any free one)")] = 8765,
    host: Annotated[
        str, typer.Option(help="address to bind; anything but loopback needs the access token printed at start")
    ] = "127.0.0.1",
    aggregate: Annotated[
        str | None, typer.Option(help="`vz aggregate` output to draw curves from (default STORE.aggregate if there)")
    ] = None,
    compare: Annotated[
        str | None,
        typer.Option(help="another store of the same texts to compare with (its aggregate: OTHER.aggregate)"),
    ] = None,
    evaluation: Annotated[
        list[str] | None, typer.Option(help="a `vz evaluate` output folder to show (repeatable)")
    ] = None,
    build: Annotated[Path | None, typer.Option(help="write a static site into this new or empty folder")] = None,
    limit: Annotated[
        int, typer.Option(help="examples a static site's table lists (the first scored ones; any example opens)")
    ] = 200,
    store_url: Annotated[
        str | None,
        typer.Option(
            help="where the static site's browser reads the store: an http(s) URL or a path relative to the site"
            " (default: the local store's path relative to --build)"
        ),
    ] = None,
    storage_option: StorageOption = None,
) -> None:
    """Serve a browser viewer of STORE on this machine, or write it as a static site with --build."""
    from jobs.aggregate.driver import default_out
    from jobs.view import ViewData, build_site, make_server
    from jobs.view.build import check_store_url, default_store_url
    from jobs.view.evaluation import check_evaluation
    from vzcore.store import StoreError
    from vzcore.store.reader import open_store

    if not 0 <= port <= 65535:
        raise fail(f"--port must be in 0..65535, not {port}")
    if limit < 1:
        raise fail(f"--limit must be at least 1, not {limit}")
    if build is not None and build.exists() and (not build.is_dir() or any(build.iterdir())):
        raise fail(f"--build {build}: not a new or empty folder")
    if store_url is not None and build is None:
        raise fail("--store-url is for a static site: give --build too")
    if build is not None:
        try:
            store_url = check_store_url(store_url) if store_url is not None else default_store_url(store, build)
        except ValueError as err:
            raise fail(str(err)) from err
    for folder in evaluation or []:
        if problem := check_evaluation(folder):
            raise fail(f"--evaluation {problem}")
    if aggregate is not None and "://" not in aggregate and not (Path(aggregate) / "layers.parquet").is_file():
        raise fail(f"--aggregate {aggregate}: no layers.parquet there (the output of `vz aggregate`)")
    options = storage_options(storage_option)

    def view_of(path: str, aggregate: str | None) -> ViewData:
        try:
            opened = open_store(path, options)
        except StoreError as err:
            raise fail(str(err)) from err
        if opened.info.sites:  # layout v5: the viewer's pages draw one square map per example
            raise fail(
                f"{path} holds an encoder-decoder's sites ({', '.join(opened.sites)}); the viewer reads single-site"
                " stores: draw an example with `vz show STORE --example ID [--site NAME]`"
            )
        if opened.info.form.words:  # the pages draw token maps and group them into words themselves
            raise fail(
                f"{path} holds maps pooled to words (vz score --store words); the viewer reads token maps: draw an"
                " example with `vz show STORE --example ID`, ask a word's rows with `vz query rows STORE --word W`"
            )
        if aggregate is None and "://" not in path and (default_out(path) / "layers.parquet").is_file():
            aggregate = str(default_out(path))
        return ViewData(opened, aggregate)

    data = view_of(store, aggregate)
    data.evaluations = list(evaluation or [])
    data.other = None if compare is None else view_of(compare, None)
    if build is not None:
        try:
            count = build_site(data, build, limit=limit, store_url=store_url)
        except ValueError as err:
            raise fail(str(err)) from err
        typer.echo(
            f"wrote a static site to {build} (its table lists {count} examples; it reads the store at {store_url}):"
            " serve the folder holding both with a static file server (one that answers Range requests is faster)"
        )
        return
    try:
        server = make_server(data, host, port)
    except OSError as err:
        raise fail(f"cannot listen on {host}:{port}: {err}") from err
    where = f"http://{host if ':' not in host else f'[{host}]'}:{server.server_address[1]}/"
    if server.token:
        typer.echo(
            f"warning: listening on {host}, reachable from other machines; every request needs the token:"
            f" {where}?token={server.token}",
            err=True,
        )
    else:
        typer.echo(f"serving {store} at {where} (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def view_main() -> None:
    """`python -m jobs.view ...`: the `vz view` command on its own."""
    from jobs.cli.entry import run_cli

    one = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    one.command()(view_command)
    run_cli(one)
