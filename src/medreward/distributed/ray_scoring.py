"""Score a Parquet / JSONL dataset on a Ray cluster with Ray Data (the ``ray`` extra).

How it runs (docs/distributed.md has the how-to and the measured overhead):

* **Read.** A JSONL file (``.jsonl``, ``.jsonl.gz``, ``.ndjson``) is read by Ray read tasks as raw
  lines with their line numbers (:func:`_jsonl_datasource`), parsed on the workers exactly as
  :func:`medreward.io.read_records` parses them (a malformed line becomes an ``error`` record that
  keeps its line number and raw text; blank lines are skipped; a byte-order mark on line 1 is
  skipped). A Parquet file is read row group by row group (:func:`_parquet_datasource`) and its
  rows are decoded as the streaming reader decodes a file that medreward wrote (JSON-text
  columns, overflow column). Read tasks reserve no CPU (the actors may hold them all).
  A ``ray.data.Dataset`` can be passed instead of a path: its rows are the records (its own
  read tasks may need a CPU, so by default one CPU of the cluster is left to them).
* **Score.** ``map_batches`` with a class-based UDF on an actor pool: each actor builds one
  :class:`~medreward.runner.Scorer` in ``__init__`` (so a spec's model backends are built once
  per actor) and scores each batch with :meth:`Scorer.score_chunk` (per-sample isolation and
  time limits as in-process, thread isolation). Actors are restarted by Ray when they die and the
  batch they held is retried (Ray Data's actor defaults ``max_restarts=-1``,
  ``max_task_retries=-1``); a batch's output is only taken from a completed task, so a retried
  batch is written once.
* **Collect.** Each output row is the scored record as the JSONL line medreward's writer writes
  (so a JSONL output is written without re-encoding); the last row of each batch also carries the
  batch's pickled :class:`~medreward.runner.RunStats`, which the driver merges. The driver
  consumes the result as a stream (``iter_batches``; nothing is materialised) and writes it
  with :func:`medreward.io.open_writer`. With ``keep_order=True`` (the default) Ray Data's
  ``preserve_order`` makes the output come in input order; ``keep_order=False`` writes batches as
  they finish (records are then matched by their ``id`` field).

Specs whose reward needs the whole input (``aggregate = "normalize_then_sum"``) or whole GRPO
groups in one batch (``pairwise``) are refused: batches on different actors cannot see each other.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..compose.spec import Spec
from ..errors import InputError, MedrewardError, SpecError
from ..io.readers import JSON_COLUMNS_KEY, OVERFLOW_KEY, _decode_row, detect_format
from ..io.writers import RecordWriter, _dumps, _JsonlWriter, open_writer
from ..records import BadRecord, Status
from ..runner import RunStats, Scorer
from ..text import encodes_as_utf8

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["RAY_EXTRA_HINT", "score_dataset", "score_on_ray"]

log = logging.getLogger(__name__)

RAY_EXTRA_HINT = "pip install 'medreward[ray]'"
#: output columns of the scoring UDF
LINE, STATUS, ERROR, STATS = "line", "status", "error", "stats"
#: input columns of the JSONL datasource: the 1-based line number and the line's bytes
LINE_NO, RAW = "medreward_line_no", "medreward_raw"
_RAW_KEEP = 2000  # characters of a malformed line kept in its error record (as the reader does)
_BOM = b"\xef\xbb\xbf"
_READ_BYTES = 1 << 20  # a JSONL read task yields a block per MiB of lines


def import_ray() -> Any:
    """``ray`` with ``ray.data``, or a :class:`MedrewardError` that says which extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401 - needs pyarrow and pandas as well
    except ImportError as exc:
        missing = exc.name or "ray"
        raise MedrewardError(f"scoring on Ray needs the 'ray' extra ({missing} is not installed): {RAY_EXTRA_HINT}") from None
    return ray


def score_dataset(
    source: str | Path | Any,
    spec: str | Path | Spec | Mapping[str, Any],
    output: str | Path | None = None,
    *,
    address: str | None = None,
    num_workers: int | None = None,
    batch_size: int = 1024,
    keep_order: bool = True,
    time_limit: float | None = 10.0,
    batch_time_limit: float | None | Literal["default"] = "default",
    cache: str | Path | None = None,
    use_cache: bool = True,
    backend_urls: Mapping[str, str] | None = None,
    cpus_per_worker: float = 1.0,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> RunStats:
    """Score a dataset on Ray and write the scored records; return the run's merged statistics.

    Args:
        source: a ``.jsonl`` / ``.jsonl.gz`` / ``.parquet`` path (on a multi-node cluster, a path
            every node can read: a shared file system or ``s3://…``), or a ``ray.data.Dataset``
            whose rows are rollout records.
        spec: a preset name, a TOML path, a dict or a :class:`~medreward.compose.Spec`.
        output: where to write the scored records (``.jsonl``, ``.jsonl.gz``, ``.parquet``; the
            driver writes it); ``None`` writes nothing (use ``on_record``).
        address: the Ray cluster to join (``"auto"``, ``"ray://host:10001"``); ``None``:
            ``$RAY_ADDRESS``, else a local cluster started for the run (shut down at the end).
            A process already connected (``ray.init`` was called) keeps its connection.
        num_workers: scoring actors (default: one per CPU of the cluster, at least 1; for a
            ``ray.data.Dataset``, one CPU fewer, left to its read tasks).
        batch_size: records per batch handed to an actor's scorer.
        keep_order: write the records in input order (else as batches finish).
        time_limit, batch_time_limit, cache, use_cache, backend_urls: as for
            :class:`~medreward.runner.Scorer`, applied in every actor.
        cpus_per_worker: CPUs Ray reserves for each actor.
        on_record: called with each scored record (a dict, the written format), in output order.

    >>> stats = score_dataset("rollouts.jsonl", "toxicology", "scored.jsonl")  # doctest: +SKIP
    >>> stats.n, stats.reward_mean  # doctest: +SKIP
    """
    scorer = Scorer(
        spec, time_limit=time_limit, batch_time_limit=batch_time_limit, chunk_size=batch_size,
        cache=cache, use_cache=use_cache, backend_urls=backend_urls,
    )  # fmt: skip
    try:
        writer = None
        if output is not None:
            if isinstance(source, (str, Path)) and Path(output).resolve() == Path(source).resolve():
                raise InputError("output path is the input file: choose another output")
            writer = open_writer(output, components=scorer.spec.component_names)
        try:
            return score_on_ray(
                scorer, source, writer, address=address, num_workers=num_workers, keep_order=keep_order,
                cpus_per_worker=cpus_per_worker, on_record=on_record,
            )  # fmt: skip
        finally:
            if writer is not None:
                writer.close()
    finally:
        scorer.close()


def score_on_ray(
    scorer: Scorer,
    source: str | Path | Any,
    writer: RecordWriter | None,
    *,
    address: str | None = None,
    num_workers: int | None = None,
    keep_order: bool = True,
    cpus_per_worker: float = 1.0,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_error: Callable[[str], None] | None = None,
) -> RunStats:
    """Score ``source`` on Ray with ``scorer``'s spec and options (its ``chunk_size`` is the batch
    size), writing to ``writer``; ``scorer.stats`` becomes the run's merged statistics (returned).

    ``on_progress(n)`` is called per batch written, ``on_error(message)`` per ``error`` record.
    This is what ``medreward score --ray`` runs; :func:`score_dataset` is the convenience form.
    """
    _check_distributable(scorer.spec)
    if num_workers is not None and num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    if not cpus_per_worker > 0:
        raise ValueError(f"cpus_per_worker must be > 0, got {cpus_per_worker}")
    if isinstance(source, (str, Path)):
        _check_input(Path(source))
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address is None:  # a local cluster of our own (or $RAY_ADDRESS's): no dashboard to run
            options["include_dashboard"] = False
        ray.init(address=address, **options)
    try:
        return _run(ray, scorer, source, writer, num_workers, keep_order, cpus_per_worker, on_record, on_progress, on_error)
    finally:
        if started_here:
            ray.shutdown()


def _run(ray, scorer, source, writer, num_workers, keep_order, cpus_per_worker, on_record, on_progress, on_error) -> RunStats:
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = keep_order
    context.enable_progress_bars = False
    started = time.perf_counter()
    scorer.stats = stats = scorer.new_stats()
    fast_lines = isinstance(writer, _JsonlWriter)  # the workers already made its exact lines
    try:
        dataset, decode = _dataset(ray, source)
        if num_workers is None:  # a Dataset's own read tasks may need a CPU: leave them one
            cpus = ray.cluster_resources().get("CPU", 1) - (0 if isinstance(source, (str, Path)) else 1)
            num_workers = max(1, int(cpus // cpus_per_worker))
        scored = dataset.map_batches(
            _ScoreBatch,
            fn_constructor_kwargs={"spec": scorer.spec.to_dict(), "options": _scorer_options(scorer), "decode": decode},
            batch_size=scorer.chunk_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=num_workers),
            num_cpus=cpus_per_worker,
        )
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2):
            lines = batch.column(LINE).to_pylist()
            if fast_lines:
                handle = writer._handle  # noqa: SLF001 - the line format is the writer's own (_dumps)
                handle.write("".join(line + "\n" for line in lines))
            if writer is not None and not fast_lines or on_record is not None:
                for line in lines:
                    record = json.loads(line)
                    if writer is not None and not fast_lines:
                        writer.write(record)
                    if on_record is not None:
                        on_record(record)
            if on_error is not None and batch.num_rows:
                for message in batch.column(ERROR).to_pylist():
                    if message is not None:
                        on_error(message)
            for blob in batch.column(STATS).to_pylist():
                if blob is not None:
                    stats.merge(pickle.loads(blob))
            if on_progress is not None:
                on_progress(len(lines))
    except MedrewardError:
        raise
    except Exception as exc:  # a read task that failed (a truncated .gz, an unreadable file)
        raise InputError(f"scoring on Ray failed after {stats.n} record(s): {_first_line(exc)}") from None
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved
        stats.seconds += time.perf_counter() - started
        _batch_metrics(scorer, stats)
    return stats


def _first_line(exc: BaseException) -> str:
    """The cause's own message: Ray wraps a task's exception in a long report."""
    cause = getattr(exc, "cause", None) or exc.__cause__ or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1][:300]}" if text else type(cause).__name__


def _batch_metrics(scorer: Scorer, stats: RunStats) -> None:
    """Run-level metrics over the merged observations (what Scorer.iter_score does in-process)."""
    for component in scorer.components:
        seen = stats.observations.get(component.name)
        if seen is None:
            continue
        try:
            stats.batch_metrics[component.name] = component.batch_metrics(seen)
        except Exception as exc:  # noqa: BLE001 - a metric must not fail the run
            log.warning("component %r: run-level metrics failed: %s", component.name, exc)


def _check_distributable(spec: Spec) -> None:
    if spec.aggregate == "normalize_then_sum":
        raise SpecError(
            f"spec {spec.name!r} uses aggregate = 'normalize_then_sum', which normalises over the whole input: "
            "it cannot be scored in batches on Ray; score it without --ray"
        )
    grouped = [c.name for c in spec.build() if c.needs_whole_groups]
    if grouped:
        raise SpecError(
            f"spec {spec.name!r}: component {grouped[0]!r} compares the members of a GRPO group, which Ray batches "
            "may split: score it without --ray"
        )


def _check_input(path: Path) -> None:
    """What :func:`read_records` refuses, refused before the cluster starts."""
    if "://" in str(path):  # a remote URI (s3://, gs://): Ray's file systems read it
        detect_format(path)
        return
    if not path.exists():
        raise InputError(f"input file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputError(f"input path {str(path)!r} is a directory, not a file")
    if detect_format(path) == "jsonl" and str(path).lower().endswith(".json"):
        with open(path, "rb") as handle:
            if handle.read(4096).removeprefix(_BOM).lstrip().startswith(b"["):
                raise InputError(f"{str(path)!r} holds one JSON array, which cannot be split between workers: "
                                 "convert it to JSONL (one object per line) or score it without --ray")  # fmt: skip


def _scorer_options(scorer: Scorer) -> dict[str, Any]:
    """The options each actor's scorer gets: the driver's limits and resolved backend endpoints."""
    options: dict[str, Any] = {
        "time_limit": scorer.time_limit if scorer.time_limit is not None else float("inf"),
        "batch_time_limit": scorer.batch_time_limit,
        "chunk_size": scorer.chunk_size,
    }
    backends = scorer._backends  # noqa: SLF001 - resolved once here, as Scorer does for its worker processes
    if backends is not None:
        options.update(
            cache=backends.cache_path,
            use_cache=backends.use_cache,
            backend_urls={name: c.base_url for name, c in backends.configs.items() if c.base_url},
            backend_factory=backends.factory,
        )
    return options


Decode = tuple[Literal["jsonl", "rows"], tuple[str, ...], str | None]


def _dataset(ray, source: Any) -> tuple[Any, Decode]:
    """The Ray dataset to score and how the UDF turns its rows into records."""
    if not isinstance(source, (str, Path)):
        if not isinstance(source, ray.data.Dataset):
            raise TypeError(f"source must be a path or a ray.data.Dataset, got {type(source).__name__}")
        return source, ("rows", (), None)
    path = str(source)
    # read tasks reserve no CPU (num_cpus=0): reading is light next to scoring, and the scoring
    # actors may hold every CPU of the cluster (one per CPU by default), which would leave a read
    # task unscheduled and the job stalled
    if detect_format(path) == "jsonl":
        return ray.data.read_datasource(_jsonl_datasource()([path]), num_cpus=0), ("jsonl", (), None)
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {} if "://" not in path else {}
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise InputError(f"cannot read {path!r} as Parquet: {exc}") from None
    try:
        json_columns = tuple(json.loads(metadata.get(JSON_COLUMNS_KEY.encode(), b"[]")))
    except ValueError:
        json_columns = ()
    overflow = metadata.get(OVERFLOW_KEY.encode(), b"").decode("utf-8", "replace") or None
    return ray.data.read_datasource(_parquet_datasource()([path]), num_cpus=0), ("rows", json_columns, overflow)


_DATASOURCES: dict[str, type] = {}


def _parquet_datasource() -> type:
    """A Ray file datasource yielding a Parquet file's row batches in order. Ray's own
    ``read_parquet`` lists files in a task that asks for a whole CPU, which never gets one while
    the scoring actors hold every CPU of the cluster (the job stalls)."""
    if "parquet" in _DATASOURCES:
        return _DATASOURCES["parquet"]
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ray.data.datasource import FileBasedDatasource

    class ParquetRows(FileBasedDatasource):
        def _open_input_source(self, filesystem: Any, path: str, **open_args: Any) -> Any:
            return filesystem.open_input_file(path)  # Parquet needs random access

        def _read_stream(self, f: Any, path: str) -> Iterator[pa.Table]:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=4096):
                yield pa.Table.from_batches([batch])

    _DATASOURCES["parquet"] = ParquetRows
    return ParquetRows


def _jsonl_datasource() -> type:
    """A Ray file datasource yielding each line's number and bytes (defined on first use: it
    subclasses a Ray class and Ray is imported lazily). Ray's own ``read_text`` decodes the
    whole file at once (one bad byte fails the read) and splits on Unicode line breaks."""
    if "jsonl" in _DATASOURCES:
        return _DATASOURCES["jsonl"]
    import pyarrow as pa
    from ray.data.datasource import FileBasedDatasource

    class JsonlLines(FileBasedDatasource):
        def _read_stream(self, f: Any, path: str) -> Iterator[pa.Table]:
            line_no, rest = 0, b""
            while True:
                chunk = f.read(_READ_BYTES)
                if not chunk:
                    break
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                # with their newline, as a file iterates: a malformed line's raw text keeps it
                yield _lines_table(pa, line_no, [line + b"\n" for line in lines])
                line_no += len(lines)
            if rest:
                yield _lines_table(pa, line_no, [rest])

    _DATASOURCES["jsonl"] = JsonlLines
    return JsonlLines


def _lines_table(pa: Any, before: int, lines: list[bytes]) -> pa.Table:
    return pa.table({
        LINE_NO: pa.array(range(before + 1, before + 1 + len(lines)), pa.int64()),
        RAW: pa.array(lines, pa.binary()),
    })  # fmt: skip


def parse_line(line_no: int, raw: bytes) -> dict[str, Any] | BadRecord | None:
    """One JSONL line (with its newline, if it has one) as :func:`medreward.io.read_records`
    reads it: a record, a :class:`BadRecord` with the line number, or None for a blank line."""
    if line_no == 1 and raw.startswith(_BOM):
        raw = raw[3:]
    if not raw.strip():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadRecord(line_no, raw[:_RAW_KEEP].decode("utf-8", "replace"),
                         f"line {line_no}: not valid UTF-8 ({exc.reason} at byte {exc.start})")  # fmt: skip
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return BadRecord(line_no, text[:_RAW_KEEP].rstrip("\n"), f"line {line_no}: invalid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(record, dict):
        return BadRecord(line_no, text[:_RAW_KEEP].rstrip("\n"),
                         f"line {line_no}: expected a JSON object, got {type(record).__name__}")  # fmt: skip
    return record


def jsonl_line(record: dict[str, Any]) -> str:
    """A scored record as medreward's JSONL writer writes it (without the newline)."""
    line = _dumps(record)
    if not encodes_as_utf8(line):  # lone surrogates: escaped, as the writer does
        line = json.dumps(record, ensure_ascii=True, default=str)
    return line


class _ScoreBatch:
    """The ``map_batches`` UDF: one Scorer per actor, built once; a batch of rows in, a batch
    of scored JSONL lines (with the batch's statistics on its last row) out."""

    def __init__(self, spec: dict[str, Any], options: dict[str, Any], decode: Decode) -> None:
        self.scorer = Scorer(spec, workers=0, isolation="thread", **options)
        self.kind, self.json_columns, self.overflow = decode

    def __call__(self, table: pa.Table) -> pa.Table:
        import pyarrow as pa

        items = self._records(table)
        scorer = self.scorer
        scorer.stats = scorer.new_stats()
        records = scorer.score_chunk(items) if items else []
        lines, statuses, errors = [], [], []
        for record in records:
            lines.append(jsonl_line(record.to_dict()))
            statuses.append(record.status.value)
            errors.append(record.info.get("error", "") if record.status is Status.ERROR else None)
        blobs: list[bytes | None] = [None] * len(records)
        if blobs:
            blobs[-1] = pickle.dumps(scorer.stats, protocol=pickle.HIGHEST_PROTOCOL)
        return pa.table({
            LINE: pa.array(lines, pa.string()), STATUS: pa.array(statuses, pa.string()),
            ERROR: pa.array(errors, pa.string()), STATS: pa.array(blobs, pa.binary()),
        })  # fmt: skip

    def _records(self, table: pa.Table) -> list[Any]:
        if self.kind == "jsonl":
            numbers = table.column(LINE_NO).to_pylist()
            raws = table.column(RAW).to_pylist()
            parsed = (parse_line(n, raw) for n, raw in zip(numbers, raws))
            return [item for item in parsed if item is not None]
        rows = table.to_pylist()
        if self.json_columns or self.overflow:
            overflow = self.overflow if self.overflow in table.column_names else None
            rows = [_decode_row(row, self.json_columns, overflow) for row in rows]
        return rows

    def __del__(self) -> None:
        scorer = getattr(self, "scorer", None)
        if scorer is not None:
            scorer.close()
