"""The resumable store: one JSON record per finished configuration (``results.ClassicalRecord``).

A record's key hashes the data fingerprint, the configuration, the seed and the scikit-learn
version, so a grid run again on the same data reuses what it finished and runs the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import sklearn

from astrospectra_jax import results

log = logging.getLogger(__name__)


def fingerprint(*arrays: np.ndarray) -> str:
    """A hash of the arrays' shapes, dtypes and bytes: the data identity in the store."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:24]


def config_key(data_id: str, classifier: str, params: dict, seed: int) -> str:
    text = json.dumps({"data": data_id, "classifier": classifier, "params": params,
                       "seed": seed, "sklearn": sklearn.__version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def write_record(store_dir, record: results.ClassicalRecord) -> Path:
    """Store one finished configuration (atomically); returns its path."""
    path = Path(store_dir) / f"{record['classifier']}-{record['key']}.json"
    results.write_json(path, record)
    return path


def read_store(store_dir) -> dict[str, results.ClassicalRecord]:
    """Every record in a store folder, by key (unreadable files are skipped with a warning)."""
    records = {}
    for path in sorted(Path(store_dir).glob("*.json")):
        try:
            record = results.read_json(path)
            records[record["key"]] = record
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("skipping unreadable result %s: %s", path, err)
    return records


def reusable(record: dict | None, budget_s: float, retry_failed: bool) -> bool:
    """Whether a stored record stands: ok always, failed unless retried, a timeout unless the
    budget has grown (or been lifted)."""
    if record is None:
        return False
    if record["status"] == "ok":
        return True
    if record["status"] == "failed":
        return not retry_failed
    return 0 < budget_s <= (record.get("time_budget_s") or 0)
