"""The landing zone: raw files by day, on a local directory or object storage (through pyarrow's
filesystems), listed and schema-checked per file before Spark reads them."""
from __future__ import annotations

import codecs
import datetime as dt
from dataclasses import dataclass

from jobs.common.config import Source
from jobs.common.errors import DataError

BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
# The completeness convention: whoever delivers a landing day writes its files first and then an empty
# ``_SUCCESS`` file into the day's folder of every source (an empty folder with only the marker for a day
# without rows). A day without every marker is still arriving: the nightly run waits for it.
MARKER = "_SUCCESS"


@dataclass(frozen=True)
class LandedFile:
    uri: str
    ds: dt.date


def _fs(uri: str):
    """(filesystem, path) for a local path or an s3:// / s3a:// URI. S3 credentials and an optional
    endpoint (an S3-compatible server) come from the standard AWS environment variables only."""
    import os
    from urllib.parse import urlparse

    from pyarrow import fs
    if "://" not in uri:
        return fs.LocalFileSystem(), uri
    scheme, rest = uri.split("://", 1)
    if scheme in ("s3", "s3a"):
        kw = {"region": os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))}
        if os.environ.get("AWS_ENDPOINT_URL"):
            ep = urlparse(os.environ["AWS_ENDPOINT_URL"])
            kw.update(endpoint_override=ep.netloc, scheme=ep.scheme or "https")
        return fs.S3FileSystem(**kw), rest
    return fs.FileSystem.from_uri(uri)


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def list_source_files(landing_root: str, source: Source, start: dt.date, end: dt.date) -> list[LandedFile]:
    """Every data file of ``source`` in the ds folders [start, end]. A missing folder is an error unless
    the source allows empty days; hidden and temporary files (``.x``, ``_x``) are skipped."""
    from pyarrow import fs as pafs
    out: list[LandedFile] = []
    day = start
    while day <= end:
        folder = _join(landing_root, source.path, f"ds={day.isoformat()}")
        fs, path = _fs(folder)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            if not source.allow_empty:
                raise DataError(f"source '{source.name}': no landing folder for ds={day} at {folder}")
        else:
            files = [f for f in fs.get_file_info(pafs.FileSelector(path)) if f.type == pafs.FileType.File
                     and not f.base_name.startswith((".", "_"))]
            if not files and not source.allow_empty:
                raise DataError(f"source '{source.name}': landing folder {folder} has no files for ds={day}")
            scheme = folder.split("://")[0] + "://" if "://" in folder else ""
            out += [LandedFile(uri=scheme + f.path if scheme else f.path, ds=day) for f in sorted(files, key=lambda f: f.path)]
        day += dt.timedelta(days=1)
    return out


def day_folder(landing_root: str, source: Source, day: dt.date) -> str:
    return _join(landing_root, source.path, f"ds={day.isoformat()}")


def missing_markers(landing_root: str, sources: list[Source], start: dt.date, end: dt.date) -> list[str]:
    """The completeness markers of [start, end] that are not there yet (full paths), for every source."""
    from pyarrow import fs as pafs
    missing = []
    day = start
    while day <= end:
        for source in sources:
            marker = _join(day_folder(landing_root, source, day), MARKER)
            fs, path = _fs(marker)
            if fs.get_file_info(path).type != pafs.FileType.File:
                missing.append(marker)
        day += dt.timedelta(days=1)
    return missing


def csv_header(uri: str, delimiter: str = ",") -> list[str]:
    """The header row of a CSV file, BOM and surrounding whitespace removed."""
    fs, path = _fs(uri)
    with fs.open_input_stream(path) as f:
        head = f.read(64 * 1024)
    for bom in BOMS:
        if head.startswith(bom):
            enc = {codecs.BOM_UTF8: "utf-8"}.get(bom, "utf-16")
            head = head.decode(enc, errors="replace").lstrip("\ufeff")
            break
    else:
        head = head.decode("utf-8", errors="replace")
    line = head.splitlines()[0] if head else ""
    return [c.strip().strip('"') for c in line.split(delimiter)] if line else []


def check_complete(uri: str) -> None:
    """A CSV writer ends its last row with a newline: a file that does not is truncated (a partial upload
    or an interrupted copy), and reading it would silently load a partial last row."""
    fs, path = _fs(uri)
    size = fs.get_file_info(path).size
    if not size:
        return
    with fs.open_input_file(path) as f:
        f.seek(size - 1)
        last = f.read(1)
    if last not in (b"\n", b"\r"):
        raise DataError(f"{uri}: file is truncated (its last row has no line ending); "
                        "nothing was loaded for this run; re-deliver the file")


def check_columns(found: list[str], source: Source, where: str) -> None:
    """Schema drift: a missing, extra or renamed column stops the run with both lists named."""
    expected = source.column_names
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            parts.append(f"unexpected column(s) {extra}")
        raise DataError(f"{where}: schema drift in source '{source.name}': {'; '.join(parts)}; "
                        f"expected columns {expected}")


def json_keys(uri: str) -> list[str]:
    """The keys of the first record of a JSON-lines file (schema drift is checked on them)."""
    import json
    fs, path = _fs(uri)
    with fs.open_input_stream(path) as f:
        head = f.read(1 << 20).decode("utf-8", errors="replace").lstrip("\ufeff")
    first = next((line for line in head.splitlines() if line.strip()), "")
    try:
        return list(json.loads(first)) if first else []
    except json.JSONDecodeError as e:
        raise DataError(f"{uri}: first record is not valid JSON ({e.msg} at column {e.colno})") from None


def parquet_schema(uri: str) -> dict[str, str]:
    """Column name -> Arrow type of a Parquet file, from its footer; a corrupt file is named."""
    import pyarrow.parquet as pq
    fs, path = _fs(uri)
    try:
        schema = pq.read_schema(path, filesystem=fs)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError variants for damaged files
        raise DataError(f"{uri}: not a readable Parquet file ({type(e).__name__}: {e}); nothing was loaded") from None
    return {f.name: str(f.type) for f in schema}


COMPATIBLE = {  # declared type -> Arrow types a Parquet file may carry for it
    "string": ("string", "large_string"),
    "double": ("double", "float", "int", "decimal"),
    "int": ("int8", "int16", "int32"),
    "long": ("int8", "int16", "int32", "int64"),
    "boolean": ("bool",),
    "timestamp": ("timestamp", "string", "large_string"),
    "date": ("date32", "date64", "string", "large_string"),
}


def check_parquet_types(schema: dict[str, str], source: Source, where: str) -> None:
    """A retyped column (e.g. amount landed as string) stops the run, naming column and both types."""
    bad = [f"'{c.name}' is {schema[c.name]}, expected {c.type}" for c in source.columns
           if c.name in schema and not schema[c.name].startswith(COMPATIBLE[c.type])]
    if bad:
        raise DataError(f"{where}: retyped column(s) in source '{source.name}': {'; '.join(bad)}; "
                        f"expected schema {[(c.name, c.type) for c in source.columns]}")
