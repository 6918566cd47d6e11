"""`vz query`: corpus queries on the command line (a token's or word's rows, the top-k examples).

vz query rows runs/chatterbot.zarr --word it --layer 4 [--sources token] [--out rows.parquet]
vz query top runs/chatterbot.zarr --statistic word_mass --word it --layer 4 -k 10
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.cli.common import StorageOption, fail, storage_options

__all__ = ["query_app"]

query_app = typer.Typer(
    help="Corpus queries, streamed part by part: a token's or word's rows, the top-k examples.", no_args_is_help=True
)

_STORE_HELP = "store path or fsspec URL"
_WORD_HELP = "a word as it reads (it, café), whatever pieces the tokenizer cut it into"
_TOKEN_HELP = "a raw token piece as the tokenizer writes it (Ġit, ##ing)"


def _query_of(token: str | None, token_id: int | None, word: str | None, ignore_case: bool) -> dict:
    """Return the one query given as keyword arguments (`token=` or `word=`), or fail (exit 2)."""
    given = [f"--{n}" for n, v in (("token", token), ("token-id", token_id), ("word", word)) if v is not None]
    if len(given) > 1:
        raise fail(f"give one of --token, --token-id or --word, not {' and '.join(given)}")
    if ignore_case and word is None:
        raise fail("--ignore-case applies to --word only")
    if word is not None:
        return {"word": word, "ignore_case": ignore_case}
    return {"token": token_id if token_id is not None else token} if given else {}


def _check_out(out: Path | None) -> None:
    if out is not None and out.suffix not in (".parquet", ".csv"):
        raise fail(f"--out {out}: write a table as .parquet or .csv")


def _show_table(table, out: Path | None, limit: int, summary: str) -> None:
    """Print `summary` and the first `limit` rows; write the whole table to `out` (Parquet or CSV)."""
    import pandas as pd

    typer.echo(summary)
    if not table.empty:
        with pd.option_context(
            "display.width", 200, "display.max_columns", 20, "display.precision", 4, "display.max_colwidth", 80
        ):
            typer.echo(table.head(limit).to_string(index=False))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(out, index=False) if out.suffix == ".parquet" else table.to_csv(out, index=False)
        typer.echo(f"wrote {len(table)} rows to {out}")
    elif len(table) > limit:
        typer.echo(f"... {len(table) - limit} more rows (--out FILE.parquet or .csv writes them all)")


@query_app.command("rows")
def query_rows_command(
    store: Annotated[str, typer.Argument(help=_STORE_HELP)],
    layer: Annotated[int, typer.Option(help="block index (negatives from the end)")],
    method: Annotated[str, typer.Option(help="a method the store holds")] = "value_zeroing",
    word: Annotated[str | None, typer.Option(help=_WORD_HELP)] = None,
    token: Annotated[str | None, typer.Option(help=_TOKEN_HELP)] = None,
    token_id: Annotated[int | None, typer.Option(help="a token id")] = None,
    ignore_case: Annotated[bool, typer.Option(help="match --word in any case")] = False,
    sources: Annotated[str, typer.Option(help="a --word's sources: word (summed over tokens) or token")] = "word",
    out: Annotated[Path | None, typer.Option(help="write every row here (.parquet or .csv)")] = None,
    limit: Annotated[int, typer.Option(help="rows printed")] = 10,
    site: Annotated[
        str | None, typer.Option(help="encoder-decoder stores: encoder, decoder or cross (rows of target tokens)")
    ] = None,
    storage_option: StorageOption = None,
) -> None:
    """Print every occurrence of a --word or --token at --layer with the row it receives (its sources)."""
    from vzcore.queries import token_rows, word_rows
    from vzcore.queries.cross import cross_rows
    from vzcore.store import StoreError
    from vzcore.store.reader import open_store

    query = _query_of(token, token_id, word, ignore_case)
    if not query:
        raise fail("give --word, --token or --token-id")
    if sources not in ("word", "token"):
        raise fail(f"--sources {sources!r}: choose from word, token")
    if sources != "word" and word is None:
        raise fail("--sources applies to --word only (a token's sources are tokens)")
    if limit < 0:
        raise fail(f"--limit must be 0 or more, not {limit}")
    _check_out(out)
    try:
        opened = open_store(store, storage_options(storage_option))
        if site == "cross":  # decoder tokens over source positions: the target's rows
            table = cross_rows(opened, layer, method, **query)
            at = ["example_id", "position"]
        elif word is not None:
            opened = opened.site(site) if site is not None else opened
            table = word_rows(opened, word, layer, method, ignore_case=ignore_case, sources=sources)
            at = ["example_id", "word_position"]
        else:
            opened = opened.site(site) if site is not None else opened
            table = token_rows(opened, query["token"], layer, method)
            at = ["example_id", "position"]
    except StoreError as err:
        raise fail(str(err)) from None
    what = f"word {word!r}" if word is not None else f"token {query['token']!r}"
    found = table.groupby(at).ngroups if len(table) else 0
    examples = table.example_id.nunique()
    _show_table(table, out, limit, f"{what} at layer {layer} ({method}): {found} occurrences in {examples} examples")


@query_app.command("top")
def query_top_command(
    store: Annotated[str, typer.Argument(help=_STORE_HELP)],
    layer: Annotated[int, typer.Option(help="block index (negatives from the end)")],
    statistic: Annotated[
        str, typer.Option(help="self_mass, context_mass, special_mass, token_mass (--token), word_mass (--word)")
    ] = "self_mass",
    method: Annotated[str, typer.Option(help="a method the store holds")] = "value_zeroing",
    k: Annotated[int, typer.Option("-k", "--k", help="examples to keep")] = 10,
    word: Annotated[str | None, typer.Option(help=_WORD_HELP + " (word_mass)")] = None,
    token: Annotated[str | None, typer.Option(help=_TOKEN_HELP + " (token_mass)")] = None,
    token_id: Annotated[int | None, typer.Option(help="a token id (token_mass)")] = None,
    ignore_case: Annotated[bool, typer.Option(help="match --word in any case")] = False,
    min_tokens: Annotated[
        int, typer.Option(help="rank only examples of at least this many tokens (short texts: few rows, noisy values)")
    ] = 1,
    out: Annotated[Path | None, typer.Option(help="write the table here (.parquet or .csv)")] = None,
    site: Annotated[str | None, typer.Option(help="encoder-decoder stores: the site, encoder or decoder")] = None,
    storage_option: StorageOption = None,
) -> None:
    """Print the -k examples ranking highest on --statistic of --method's map at --layer, with their texts."""
    from vzcore.queries import top_examples
    from vzcore.store import StoreError
    from vzcore.store.reader import open_store

    query = _query_of(token, token_id, word, ignore_case)
    _check_out(out)
    try:  # the statistic, its query, k, the method and the layer are checked before any part is read
        opened = open_store(store, storage_options(storage_option))
        opened = opened.site(site) if site is not None else opened
        table = top_examples(opened, statistic, method, layer, k, min_tokens=min_tokens, **query)
    except StoreError as err:
        raise fail(str(err)) from None
    longer = f", of at least {min_tokens} tokens" if min_tokens > 1 else ""
    _show_table(table, out, k, f"top {len(table)} examples by {statistic} at layer {layer} ({method}){longer}:")
