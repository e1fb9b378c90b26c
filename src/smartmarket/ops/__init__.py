"""Operations: backup and restore of a whole installation, retention (archive then trim the event log and old
dead letters), ``doctor`` checks, storage footprint figures."""

from smartmarket.ops.backup import BackupResult, create_backup
from smartmarket.ops.doctor import Check, run_doctor
from smartmarket.ops.footprint import bytes_on_disk, bytes_per_candle, candle_count, parquet_bytes
from smartmarket.ops.manifest import Manifest, read_manifest
from smartmarket.ops.restore import ItemCheck, RestoreReport, restore_backup
from smartmarket.ops.retention import (
    RetentionPolicy,
    RetentionReport,
    apply_retention,
    import_archive,
    read_archive,
)

__all__ = [
    "BackupResult",
    "Check",
    "ItemCheck",
    "Manifest",
    "RestoreReport",
    "RetentionPolicy",
    "RetentionReport",
    "apply_retention",
    "bytes_on_disk",
    "bytes_per_candle",
    "candle_count",
    "create_backup",
    "import_archive",
    "parquet_bytes",
    "read_archive",
    "read_manifest",
    "restore_backup",
    "run_doctor",
]
