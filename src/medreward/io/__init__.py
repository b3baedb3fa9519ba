"""Streaming readers and writers for rollout and scored-record files (JSONL, Parquet)."""

from .readers import GuardedRecords, RecordStream, detect_format, read_records
from .writers import RecordWriter, open_writer

__all__ = ["GuardedRecords", "RecordStream", "RecordWriter", "detect_format", "open_writer", "read_records"]
