"""The scoring job for encoder–decoders (T5/mT5, BART/Marian, mBART, Whisper): (source, target) pairs
into a layout v5 store holding every site's maps (docs/store-layout.md#layout-v5-encoder-decoder-sites).

    vz score --model t5-folder --dataset pairs.jsonl --source-column src --target-column tgt --out runs/t5.zarr
    vz score --model whisper-tiny.en --dataset speech.csv --source-column file --target-column text \\
        --sites decoder,cross --out runs/speech.zarr

The same run as `jobs.score.driver`'s (plan, lease, executor, resume, summary: `jobs.score.running`),
with its own checks, plan and step (`jobs.score.pairstep`). A row without a target (no target column,
or a null or blank value) is the model's own greedy output; each example's `decoding` says which.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.connect import interrupt_on_sigterm
from cluster.credentials import public_options
from cluster.executor import Event
from cluster.where import open_executor
from jobs.score.config import JobConfig
from jobs.score.data import DatasetError
from jobs.score.identity import check_identity, fingerprint, hashed_identities, versions
from jobs.score.lease import hold_lease
from jobs.score.pairdata import PairSource, open_pairs
from jobs.score.pairstep import PairSpec, load_pair_scorer, score_pair_part
from jobs.score.plan import RUNTIME_BYTES, cut_parts, replan_from, token_lengths
from jobs.score.running import marker, missing_parts, score_parts, store_bytes, stored_attrs
from jobs.score.summary import Summary
from jobs.score.validate import STORE_DTYPES, JobError, check_output
from vzcore.audio import audio_seconds, frames_for_seconds
from vzcore.ct2format import is_ctranslate2_folder
from vzcore.ctranslate import whisper_config
from vzcore.families import UnsupportedModelError
from vzcore.families.encdec import EncDecSpec, encdec_family_for
from vzcore.loading import ModelNotFoundError, loadable_path, resolve_short_name
from vzcore.maps import resolve_layers
from vzcore.ops.distances import DISTANCES
from vzcore.seq2seq.scoring import check_site_methods
from vzcore.store.completion import write_done
from vzcore.store.root import RootAttrs, write_root_attrs
from vzcore.store.sites import SITE_ORDER, SiteLayout, site_sizes
from vzcore.store.writer import clear_store

__all__ = ["CheckedPairJob", "check_pair_job", "is_pair_job", "run_pair_job"]


@dataclass(frozen=True)
class CheckedPairJob:
    """An encoder–decoder job whose arguments passed every check."""

    cfg: JobConfig
    path: str  # what `from_pretrained` reads (a faster-whisper folder: its converted copy)
    config: Any
    family: EncDecSpec
    tokenizer: Any
    sites: tuple[SiteLayout, ...]
    distance: str

    @property
    def audio(self) -> bool:
        return self.family.audio


def _model_config(name: str) -> Any:
    """The model's config, read without weights (None when it cannot be read: the usual checks then say why)."""
    from transformers import AutoConfig

    source = resolve_short_name(name) if not Path(name).exists() else name
    try:
        if is_ctranslate2_folder(Path(source).expanduser()):
            return whisper_config(Path(source).expanduser())
        return AutoConfig.from_pretrained(source)
    except Exception:
        return None


def _pair_options(cfg: JobConfig) -> list[tuple[str, bool]]:
    """The options that only an encoder–decoder run takes, each with whether it was given."""
    return [
        ("--source-column", cfg.source_column is not None),
        ("--target-column", cfg.target_column is not None),
        ("--sites", cfg.sites is not None),
        ("--site-layers", bool(cfg.site_layers)),
    ]


def is_pair_job(cfg: JobConfig) -> bool:
    """Whether `cfg` scores an encoder–decoder (its model's config says so, or pair options are given)."""
    if any(given for _, given in _pair_options(cfg)):
        return True
    try:
        local = Path(resolve_short_name(cfg.model)).expanduser().exists()
    except Exception:
        return False
    if not local:  # a hub name: asked of the hub once, by the usual checks (pair options mark a pair job)
        return False
    config = _model_config(cfg.model)
    try:
        return config is not None and encdec_family_for(config) is not None
    except UnsupportedModelError:
        return False


def _stacks(config: Any) -> dict[str, int]:
    """Blocks per site's stack, from the config (T5 names them `num_layers`, `num_decoder_layers`)."""
    enc = getattr(config, "encoder_layers", None) or config.num_layers
    dec = getattr(config, "decoder_layers", None) or getattr(config, "num_decoder_layers", None) or config.num_layers
    return {"encoder": int(enc), "decoder": int(dec), "cross": int(dec)}


def _check_options(cfg: JobConfig) -> str:
    try:
        check_site_methods(cfg.methods)
    except ValueError as err:
        raise JobError(str(err)) from None
    options = dict(cfg.options)
    unknown = sorted(set(options) - {"distance"})
    if unknown:
        raise JobError(f"--option {', '.join(unknown)}: encoder-decoder sites take only distance=cosine|euclidean")
    distance = str(options.get("distance", "cosine"))
    if distance not in DISTANCES:
        raise JobError(f"--option distance={distance}: choose from {', '.join(DISTANCES)}")
    refusals = [
        (cfg.store_form != "dense", f"--store {cfg.store_form}"),
        (cfg.targets != "all", f"--targets {cfg.targets}"),
        (cfg.max_length is not None, "--max-length"),
        (cfg.precision != "float32", f"--precision {cfg.precision}"),
    ]
    said = [what for refused, what in refusals if refused]
    if said:
        raise JobError(
            f"{', '.join(said)}: an encoder-decoder's sites are scored whole in float32 and stored dense "
            "(layout v5); leave these out"
        )
    if cfg.store_dtype not in STORE_DTYPES:
        raise JobError(f"--store-dtype must be one of {', '.join(STORE_DTYPES)}, not {cfg.store_dtype!r}")
    if cfg.max_new_tokens < 1:
        raise JobError(f"--max-new-tokens must be at least 1, not {cfg.max_new_tokens}")
    if cfg.part_size is not None and cfg.part_size < 1:
        raise JobError(f"--part-size must be at least 1, not {cfg.part_size}")
    if (cfg.actors or 0) < 0:
        raise JobError(f"--actors must be at least 0 (0: in this process), not {cfg.actors}")
    if not cfg.part_mb > 0:
        raise JobError(f"--part-mb must be more than 0, not {cfg.part_mb}")
    if cfg.limit is not None and cfg.limit < 0:
        raise JobError(f"--limit must be 0 (all rows) or more, not {cfg.limit}")
    try:
        cfg.where.check()
    except ValueError as err:
        raise JobError(str(err)) from None
    return distance


def _check_sites(cfg: JobConfig, config: Any) -> tuple[SiteLayout, ...]:
    names = list(cfg.sites or SITE_ORDER)
    unknown = [s for s in names if s not in SITE_ORDER]
    if unknown:
        raise JobError(
            f"--sites {','.join(names)}: unknown site{'s' if len(unknown) > 1 else ''} {', '.join(unknown)};"
            f" choose from {', '.join(SITE_ORDER)}"
        )
    if not names or len(set(names)) != len(names):
        raise JobError(f"--sites {','.join(names)}: name each of {', '.join(SITE_ORDER)} at most once")
    stacks = _stacks(config)
    own = dict(cfg.site_layers)
    stray = sorted(set(own) - set(names))
    if stray:
        raise JobError(f"--site-layers {', '.join(stray)}: not a scored site (--sites: {', '.join(names)})")
    out = []
    for s in (s for s in SITE_ORDER if s in names):
        given = f"--site-layers {s}={','.join(str(k) for k in own[s])}" if s in own else "--layers"
        layers, option = (own[s], given) if s in own else (cfg.layers, given)
        try:
            out.append(SiteLayout(s, tuple(sorted(resolve_layers(layers, stacks[s]))), stacks[s]))
        except ValueError as err:
            raise JobError(f"{option}: {err} (at the {s} site)") from None
    return tuple(out)


def check_pair_job(cfg: JobConfig) -> CheckedPairJob:
    """Check every argument of an encoder–decoder run and read its model's config and tokenizer (no weights)."""
    distance = _check_options(cfg)
    config = _model_config(cfg.model)
    if config is None:
        raise JobError(f"cannot read the config of model {cfg.model!r} (a path, a short name or a reachable hub name)")
    if not getattr(config, "is_encoder_decoder", False):  # a single-stack model: the pair options mean nothing
        given = [o for o, v in _pair_options(cfg) if v]
        raise JobError(
            f"{cfg.model} is not an encoder-decoder ({getattr(config, 'model_type', 'unknown type')}), so "
            f"{'/'.join(given) or '--source-column'} {'do' if len(given) > 1 else 'does'} not apply; leave "
            f"{'them' if len(given) > 1 else 'it'} out to score it with --text-column"
        )
    try:
        family = encdec_family_for(config)
    except UnsupportedModelError as err:
        raise JobError(f"--source-column/--target-column/--sites are for encoder-decoders: {err}") from None
    sites = _check_sites(cfg, config)
    try:
        path = loadable_path(cfg.model)  # a faster-whisper folder: converted once into the cache
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
    except (ModelNotFoundError, OSError, ValueError) as err:
        raise JobError(f"cannot read the tokenizer of {cfg.model!r}: {err}") from None
    return CheckedPairJob(cfg, path, config, family, tokenizer, sites, distance)


# What a pair run's data identity holds (`_identities`), as a refusal names it.
PAIR_IDENTITY = "part size, model weights/tokenizer, sites and their layers, --max-new-tokens, the columns"


def _identities(job: CheckedPairJob) -> tuple[str, dict[str, str]]:
    cfg = job.cfg
    data = {
        "part_size": cfg.part_size,
        "part_mb": cfg.part_mb,
        "model": fingerprint(job.path),
        "sites": [s.to_attr() for s in job.sites],
        "max_new_tokens": cfg.max_new_tokens,
        "pairs": [cfg.source_column or cfg.text_column, cfg.target_column],
        # audio: only the frames that hold each utterance are positions (`score_pairs(frames="audio")`)
        **({"frames": "audio"} if job.family.audio else {}),
    }
    return hashed_identities(data, {m: {"distance": job.distance, "store_dtype": cfg.store_dtype} for m in cfg.methods})


def _lengths(job: CheckedPairJob, source: PairSource, start: int) -> tuple[list[int], list[int], int]:
    """Per row from `start`: source and target positions as planned (audio: the frames that hold the
    utterance, from its file's header; no target: the greedy limit), and how many rows have no target."""
    n_src: list[int] = []
    n_tgt: list[int] = []
    greedy = 0
    for rows in source.batches(start):
        targets = [r["target"] if isinstance(r["target"], str) and r["target"].strip() else None for r in rows]
        if job.audio:
            n_src.extend(_planned_frames(job.config, r["source"], source.base) for r in rows)
        else:
            counts, _ = token_lengths(job.tokenizer, [r["source"] for r in rows], None)
            n_src.extend(int(n) for n in counts)
        counts, _ = token_lengths(job.tokenizer, [t or "" for t in targets], None)
        n_tgt.extend(int(n) + 1 if t else job.cfg.max_new_tokens + 1 for n, t in zip(counts, targets, strict=True))
        greedy += sum(t is None for t in targets)
    return n_src, n_tgt, greedy


def _planned_frames(config: Any, row: Any, base: Path | None) -> int:
    """An audio row's encoder frames as planned: the frames its duration fills, read from the file's header
    (the driver decodes no audio); the whole window where no header says (the actor then finds out why)."""
    seconds = None
    if isinstance(row, dict) and row.get("bytes"):
        seconds = audio_seconds(row["bytes"])
    elif isinstance(row, dict) and row.get("path"):
        path = Path(row["path"]).expanduser()
        full = path if path.is_absolute() or base is None else base / path
        seconds = audio_seconds(full) if full.is_file() else None
    window = int(getattr(config, "max_source_positions", 0) or 0)
    return window if seconds is None else max(1, frames_for_seconds(config, seconds))


def _replica_bytes(config: Any) -> int:
    """One float32 replica's weights (from the config's sizes) and its runtime: caps the default actors."""
    d = int(getattr(config, "d_model", 512))
    blocks = sum(_stacks(config)[s] for s in ("encoder", "decoder"))
    return 4 * (int(config.vocab_size) * d + blocks * 16 * d * d) + RUNTIME_BYTES


def run_pair_job(cfg: JobConfig, *, on_event: Callable[[Event], None] | None = None) -> Summary:
    """Run an encoder–decoder scoring job; return its summary (`JobError` on bad arguments)."""
    job = check_pair_job(cfg)
    data_id, identity = _identities(job)
    stored = {} if cfg.overwrite or cfg.dry_run else stored_attrs(cfg)
    if stored:
        check_identity(stored, data_id, identity, PAIR_IDENTITY)
    stored_plan = stored.get("plan", [])
    limit = None if cfg.limit is None else max(cfg.limit, max((p["stop"] for p in stored_plan), default=0))
    try:
        source = open_pairs(
            cfg.dataset, cfg.config, cfg.split, cfg.source_column or cfg.text_column, cfg.target_column, limit,
            cfg.format, job.audio,
        )  # fmt: skip
    except DatasetError as err:
        raise JobError(str(err)) from None
    kept, start, last = replan_from(stored_plan)
    n_src, n_tgt, greedy = _lengths(job, source, start)
    sizes = [sum(site_sizes(job.sites, a, b)) for a, b in zip(n_src, n_tgt, strict=True)]
    fresh = cut_parts(
        sizes, part_mb=cfg.part_mb, part_size=cfg.part_size, start=start, first_part=len(kept), at_least=last
    )
    plan = kept + fresh
    line = (
        f"sites {', '.join(f'{s.name} (layers {list(s.layers)})' for s in job.sites)}; targets: "
        f"{len(sizes) - greedy} given (forced), {greedy} the model's greedy output (of the newly planned rows)"
    )
    summary = Summary(store=cfg.out, planned_parts=len(plan), form_line=line)
    if cfg.dry_run:
        summary.plan_lines = [
            f"dataset      {cfg.dataset} [{cfg.split}] source {source.source_column!r}, target "
            f"{source.target_column!r}: {source.count} of {source.total} rows",
            f"model        {cfg.model} ({job.config.model_type}, encoder-decoder{', audio' if job.audio else ''})",
            f"methods      {', '.join(cfg.methods)}",
            f"parts        {len(plan)} of up to {cfg.part_mb:g} MiB of maps per method",
            f"values       {sum(sizes)} per method (about {2 * sum(sizes) / 2**20:.1f} MiB in float16)",
            f"maps stored  {line}",
        ]
        return summary
    tasks, _ = missing_parts(cfg, bool(stored), plan, source)
    actors = 0 if not tasks else None if cfg.actors is None else min(cfg.actors, len(tasks))
    where = dataclasses.replace(cfg.where, actors=actors, replica_bytes=_replica_bytes(job.config))
    opened = open_executor(where, replica=True, outputs=[cfg.location], units=len(tasks))
    with interrupt_on_sigterm(), opened as (executor, placement):
        check_output(cfg)
        with hold_lease(cfg.location, break_lock=cfg.break_lock):
            stored = {} if cfg.overwrite else stored_attrs(cfg)
            if stored:
                check_identity(stored, data_id, identity, PAIR_IDENTITY)
            tasks, done = missing_parts(cfg, bool(stored), plan, source)
            summary.parts_run = len(tasks)
            if cfg.overwrite:
                clear_store(cfg.location)
            root = cfg.location.open_group(mode="a")
            special = sorted(int(i) for i in getattr(job.tokenizer, "all_special_ids", []))
            attrs = RootAttrs(
                methods=list(dict.fromkeys([*stored.get("methods", []), *cfg.methods])),
                layers=sorted({k for s in job.sites for k in s.layers}),
                model_num_layers=max(s.num_layers for s in job.sites),
                causal=False,
                model_type=str(job.config.model_type),
                plan=plan,
                special_token_ids=special,
                config={**cfg.to_record(), "model_source": job.path},
                identity={**stored.get("identity", {}), **identity},
                data_identity=data_id,
                versions=stored.get("versions") or versions(),
                sites=[s.to_attr() for s in job.sites],
                source_kind="frames" if job.audio else "tokens",
            )
            write_root_attrs(root, attrs)
            write_done(root, [attrs.mask_of(methods) for methods in done])
            if tasks:
                spec = PairSpec(
                    model=job.path,
                    methods=tuple(cfg.methods),
                    distance=job.distance,
                    sites=job.sites,
                    max_new_tokens=cfg.max_new_tokens,
                    location=type(cfg.location)(cfg.out, public_options(cfg.out, cfg.storage_options)),
                    store_dtype=cfg.store_dtype,
                    audio=job.audio,
                    num_threads=placement.num_threads,
                    device=placement.device,
                    special_ids=tuple(special),
                    memory_budget=cfg.memory_budget,
                    audio_base=None if source.base is None else str(source.base),
                )
                step = {"step": score_pair_part, "replica": functools.partial(load_pair_scorer, spec)}
                score_parts(cfg, executor, tasks, source, summary, on_event, marker(root, attrs), **step)
    summary.store_bytes = store_bytes(cfg)
    return summary
