"""The Spark jars a conf needs (Delta, hadoop-aws, ...), resolved once from Maven Central into ``state/jars``
and handed to every Spark session by path (``spark.jars``), so no Spark process resolves anything.

    python -m jobs.common.jars --conf conf/local.yaml [--conf conf/s3.yaml ...]      (make setup)

A conf's ``spark.packages`` (Maven coordinates) and ``spark.conf: spark.jars.excludes`` are resolved with
Apache Ivy, the resolver spark-submit itself uses for ``spark.jars.packages`` (its jar ships inside pyspark),
run as its own command line against Maven Central only: Spark's default chain first tries a local Maven
repository and repos.spark-packages.org, which a closed network answers with a "Host not found" line per
jar. As spark-submit does, it leaves out Scala's library and Spark's own modules (Spark has them).

The jars of one list of coordinates land in ``state/jars/<key>/`` (``key``: a hash of the coordinates and
excludes), with ``jars.txt`` naming them, written last: a folder without it is an interrupted resolution
and is redone. Ivy's log goes to ``state/jars/<key>.log``; a failure names it and shows its tail.
"""
from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from xml.sax.saxutils import quoteattr

from jobs.common.config import REPO_ROOT, Settings
from jobs.common.errors import ConfigError

JARS_DIR = Path(os.environ.get("TRAINYARD_JARS_DIR", str(REPO_ROOT / "state" / "jars")))
MAVEN_CENTRAL = os.environ.get("TRAINYARD_MAVEN_REPOSITORY", "https://repo1.maven.org/maven2/")
MANIFEST = "jars.txt"


def ivy_settings(repository: str) -> str:
    """Ivy's settings: one Maven repository, nothing else."""
    return f"""<ivysettings>
  <settings defaultResolver="central"/>
  <resolvers><ibiblio name="central" m2compatible="true" root={quoteattr(repository)}/></resolvers>
</ivysettings>
"""


def _coordinate(text: str, where: str) -> tuple[str, str, str]:
    parts = text.split(":")
    if len(parts) != 3 or not all(parts):
        raise ConfigError(f"{where}: '{text}' is not a Maven coordinate group:artifact:version")
    return parts[0], parts[1], parts[2]


def wanted(settings: Settings) -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(the coordinates, the (group, artifact) excludes) of a conf."""
    where = f"{settings.source or 'settings'}: spark.packages"
    packages = [_coordinate(p, where) for p in settings.spark_packages]
    excludes = []
    for e in filter(None, (x.strip() for x in settings.spark_conf.get("spark.jars.excludes", "").split(","))):
        group, sep, artifact = e.partition(":")
        if not sep:
            raise ConfigError(f"{settings.source or 'settings'}: spark.jars.excludes '{e}' is not group:artifact")
        excludes.append((group, artifact))
    return packages, excludes


def ivy_module(packages: list[tuple[str, str, str]], excludes: list[tuple[str, str]]) -> str:
    """An Ivy module file depending on ``packages``, without Scala's library and Spark's own modules."""
    deps = "\n".join(f'    <dependency org={quoteattr(g)} name={quoteattr(a)} rev={quoteattr(v)} conf="default->default(runtime)"/>'
                     for g, a, v in packages)
    rules = [("org.scala-lang", "scala-library", "exact"), ("org.apache.spark", "spark-.*", "regexp")]
    rules += [(g, a, "exact") for g, a in excludes]
    excl = "\n".join(f'    <exclude org={quoteattr(g)} module={quoteattr(a)} matcher="{m}"/>' for g, a, m in rules)
    return f"""<ivy-module version="2.0">
  <info organisation="trainyard" module="spark-jars"/>
  <configurations><conf name="default"/></configurations>
  <dependencies>
{deps}
{excl}
  </dependencies>
</ivy-module>
"""


def folder(settings: Settings) -> Path:
    packages, excludes = wanted(settings)
    key = hashlib.sha256(ivy_module(packages, excludes).encode()).hexdigest()[:12]
    return JARS_DIR / key


def resolved(settings: Settings) -> list[str] | None:
    """The jar paths of a conf if they are in ``state/jars`` (no packages: an empty list), else None."""
    if not settings.spark_packages:
        return []
    manifest = folder(settings) / MANIFEST
    if not manifest.is_file():
        return None
    paths = [str(manifest.parent / name) for name in manifest.read_text().split()]
    return paths if all(os.path.isfile(p) for p in paths) else None


def _ivy_jar() -> str:
    import pyspark
    found = sorted(glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "ivy-*.jar")))
    if not found:
        raise ConfigError(f"no ivy-*.jar in {os.path.dirname(pyspark.__file__)}/jars: is pyspark installed whole?")
    return found[-1]


def resolve(settings: Settings) -> list[str]:
    """The jar paths of a conf, resolving them into ``state/jars`` first when they are not there yet."""
    paths = resolved(settings)
    if paths is not None:
        return paths
    target = folder(settings)
    packages, excludes = wanted(settings)
    java = shutil.which("java", path=os.path.join(os.environ["JAVA_HOME"], "bin") if os.environ.get("JAVA_HOME") else None)
    if java is None:
        raise ConfigError("no java found (JAVA_HOME or PATH): Spark needs Java 17+ (apt-get install openjdk-17-jre-headless)")
    work = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "ivysettings.xml").write_text(ivy_settings(MAVEN_CENTRAL))
    (work / "ivy.xml").write_text(ivy_module(packages, excludes))
    log = target.with_suffix(".log")
    cmd = [java, "-jar", _ivy_jar(), "-settings", str(work / "ivysettings.xml"), "-ivy", str(work / "ivy.xml"),
           "-cache", str(JARS_DIR / "cache"), "-confs", "default",
           "-retrieve", str(work / "[organisation]_[artifact]-[revision](-[classifier]).[ext]"), "-types", "jar", "bundle"]
    with log.open("w") as out:
        rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    jars = sorted(p.name for p in work.glob("*.jar"))
    if rc != 0 or not jars:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        shutil.rmtree(work, ignore_errors=True)
        raise ConfigError(f"{settings.source}: resolving spark.packages {list(settings.spark_packages)} from "
                          f"{MAVEN_CENTRAL} failed (ivy exit {rc}); log {log}:\n" + "\n".join(tail))
    (work / MANIFEST).write_text("\n".join(jars) + "\n")
    for name in ("ivy.xml", "ivysettings.xml"):
        (work / name).unlink()
    shutil.rmtree(target, ignore_errors=True)  # an interrupted earlier attempt (no manifest)
    os.replace(work, target)
    return [str(target / name) for name in jars]


def main(argv: list[str] | None = None) -> int:
    import argparse
    p = argparse.ArgumentParser(prog="python -m jobs.common.jars", description=__doc__.splitlines()[0])
    p.add_argument("--conf", action="append", default=[], help="environment settings (repeatable; default conf/local.yaml)")
    args = p.parse_args(argv)
    try:
        for conf in args.conf or ["conf/local.yaml"]:
            settings = Settings.load(conf)
            if resolved(settings) is not None:
                continue
            t0 = time.perf_counter()
            paths = resolve(settings)
            mb = sum(os.path.getsize(p) for p in paths) / 2**20
            print(f"spark jars for {conf}: {len(paths)} jars ({mb:.0f} MB) from Maven Central in "
                  f"{time.perf_counter() - t0:.0f} s -> {os.path.relpath(folder(settings), REPO_ROOT)}")
    except ConfigError as e:
        print(f"trainyard jars FAILED: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
