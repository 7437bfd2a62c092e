"""Spark SQL expressions a dataset spec holds (derived features, the label): which columns one reads, the
same expression over renamed columns, and the first check of one against a frame, with an error that names
the spec file and key. Text only, no Spark, except ``check``."""
from __future__ import annotations

import re

from jobs.common.errors import ConfigError

# a quoted string (kept as it is), a backticked name, or a bare name and whether a call's "(" follows it
TOKEN = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|`([^`]+)`|([A-Za-z_][A-Za-z0-9_]*)(\s*\()?""")


def referenced_columns(expr: str, columns: list[str]) -> list[str]:
    """Columns of ``columns`` an SQL expression mentions (bare or backticked names outside quotes, not calls)."""
    names = set()
    for m in TOKEN.finditer(expr):
        if m.group(2):
            names.add(m.group(2))
        elif m.group(3) and not m.group(4):
            names.add(m.group(3))
    return [c for c in columns if c in names]


def rebind(expr: str, mapping: dict[str, str]) -> str:
    """``expr`` with every mention of a column of ``mapping`` replaced by its new name (backticked)."""
    def sub(m: re.Match) -> str:
        name = m.group(2) or (m.group(3) if not m.group(4) else None)
        return f"`{mapping[name]}`" if name in mapping else m.group(0)
    return TOKEN.sub(sub, expr)


def check(df, expr: str, where: str, allowed: list[str]):
    """``F.expr(expr)`` resolved against ``df`` (nothing is computed): its data type; a bad expression is a
    ConfigError naming ``where`` (file and key) and the columns it may read."""
    from pyspark.errors import AnalysisException, ParseException
    from pyspark.sql import functions as F
    try:
        return df.select(F.expr(expr).alias("_checked")).schema["_checked"].dataType
    except (AnalysisException, ParseException) as e:
        first = str(e).strip().splitlines()[0][:300]
        raise ConfigError(f"{where} '{expr}' is not a valid Spark SQL expression over the columns "
                          f"{allowed}: {first}") from None
