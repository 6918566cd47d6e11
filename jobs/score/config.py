"""The scoring job's resolved configuration: built once from the command line, passed explicitly."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from cluster.where import Where
from vzcore.store.location import Location

__all__ = ["DEFAULT_LIMIT", "DEFAULT_PART_MB", "JobConfig"]

DEFAULT_LIMIT = 200  # the quick start scores this many chatterbot lines
DEFAULT_PART_MB = 32.0  # MiB of float16 maps per method in a part (jobs.score.plan)


@dataclass(frozen=True)
class JobConfig:
    """Everything one `vz score` run needs; `to_record()` is what the store's `config` attr holds."""

    out: str  # the store: a local path or an fsspec URL (s3://...)
    dataset: str | None = None  # hub name, save_to_disk folder, or a local file/folder; None: chatterbot English
    config: str | None = None  # the dataset's configuration name (hub datasets)
    split: str = "train"  # hub datasets and save_to_disk folders with splits; plain files are one split, train
    text_column: str = "text"  # a nested field as `doc.text`
    # Encoder-decoders (jobs.score.pairjob): the source column (text, or audio: a `datasets` Audio column or
    # file paths) and the target column (None, or a null row: the model's own greedy output).
    source_column: str | None = None  # None: `text_column`
    target_column: str | None = None
    sites: tuple[str, ...] | None = None  # encoder, decoder, cross (None: all three)
    max_new_tokens: int = 64  # greedy decoding stops here (or at the end-of-sequence token)
    site_layers: tuple[tuple[str, tuple[int, ...]], ...] = ()  # per site, its layers (others: `layers`)
    format: str | None = None  # local files: text, csv, json or parquet; None: from each file's extension
    model: str = "minilm"  # short name, local path, GGUF file or hub name
    methods: tuple[str, ...] = ("value_zeroing", "attention")
    options: tuple[tuple[str, object], ...] = ()  # method options, e.g. (("distance", "cosine"),)
    limit: int | None = DEFAULT_LIMIT  # score the first `limit` rows; None: all of them
    max_length: int | None = None  # token limit (default: the model's)
    layers: tuple[int, ...] | None = None  # block indices; None: every layer
    part_mb: float = DEFAULT_PART_MB  # a part (the unit of work, writing and resume) holds at most this much
    part_size: int | None = None  # and, if set, at most this many examples
    batch_size: int = 8  # examples per forward pass, batched by length within a part
    # Where the parts run (`cluster.where.Where`, the same fields): by default on a local cluster, one
    # single-threaded actor per core on CPUs, one actor on GPUs.
    actors: int | None = None  # model replicas (None: the default above); 0 scores in this process without Ray
    device: str = "auto"  # auto: GPUs if the cluster has some when the job starts; cpu; cuda
    gpus_per_actor: float = 1.0  # on GPUs (fractions allowed: 0.5 puts two actors on a GPU)
    cpus_per_actor: int | None = None  # torch threads of a CPU actor; default 1, or the CPUs divided among --actors N
    address: str | None = None  # a Ray cluster to join; None starts a local one on loopback
    precision: str = "float32"  # float32, bfloat16, or tf32 (CUDA only): see vzcore.precision
    store_dtype: str = "float16"  # float16 loses at most about 2.5e-4 on normalised scores
    store_form: str = "dense"  # dense, top-k=K,threshold=T, or auto (vzcore.store.forms): reduced forms are layout v4
    targets: str = "all"  # which rows to score and store: all, last, mask (jobs.score.targets)
    memory_budget: int | None = None  # bytes per chunk of pairs (None: vzcore's default per device); halved on OOM
    overwrite: bool = False  # replace a store whose identity differs
    break_lock: bool = False  # take over the store's lease from a run known to be gone
    dry_run: bool = False
    progress: bool = True
    max_attempts: int = 3  # an actor death on a part is retried this many times in all
    background_writes: bool | None = None  # write a part behind the next one's scoring (None: on GPUs only)
    storage_options: dict = field(default_factory=dict, hash=False)  # fsspec options for URLs

    def replace(self, **changes) -> JobConfig:
        return dataclasses.replace(self, **changes)

    @property
    def where(self) -> Where:
        """Where the parts run."""
        return Where(
            address=self.address,
            actors=self.actors,
            device=self.device,
            gpus_per_actor=self.gpus_per_actor,
            cpus_per_actor=self.cpus_per_actor,
            max_attempts=self.max_attempts,
            background_writes=self.background_writes,
        )

    @property
    def location(self) -> Location:
        """Where the store is, with the options that reach it."""
        return Location(self.out, dict(self.storage_options))

    def to_record(self) -> dict:
        """Return the JSON-safe config recorded in the store (no credentials)."""
        rec = dataclasses.asdict(self)
        rec.pop("storage_options")
        rec["options"] = dict(self.options)
        rec["methods"] = list(self.methods)
        rec["layers"] = list(self.layers) if self.layers is not None else None
        rec["sites"] = list(self.sites) if self.sites is not None else None
        rec["site_layers"] = {site: list(layers) for site, layers in self.site_layers} or None
        defaults = (("store_form", "dense"), ("targets", "all"), ("source_column", None), ("target_column", None),
                    ("sites", None), ("max_new_tokens", 64), ("site_layers", None))  # fmt: skip
        for key, default in defaults:  # a single-stack store records as before
            if rec[key] == default:
                rec.pop(key)
        return rec
