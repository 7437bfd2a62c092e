"""pyspark's Python worker for the train step's session on one machine, started without scikit-learn.

The fit's Python worker unpickles xgboost.spark's training function, which imports ``xgboost.spark.core``;
``import xgboost`` then imports scikit-learn (and much of SciPy) when it is installed, to base its estimator
classes on, and the package ``xgboost.spark`` builds an estimator of each kind at import to read their
default params. The worker builds no estimator: it builds matrices and calls ``xgboost.train``. So here
scikit-learn is hidden (``import sklearn`` raises ImportError, which xgboost catches and replaces with its
own stand-in base classes, as where scikit-learn is not installed) and ``xgboost.spark`` is registered as
a bare package, so its modules load without its ``__init__``. The worker skips ~70 MB and ~1.5 s of
imports (bench/RESULTS.md). The driver, which builds the estimator, imports everything as usual.

``train.training_settings`` names this module in ``spark.python.worker.module`` with the worker daemon off
(``spark.python.use.daemon``): the fit runs one Python worker per task (``xgb_spark._BarrierStage``), so a
daemon would be one more interpreter for nothing to fork from. A task of that session that imports
scikit-learn fails with an ImportError naming it; only the fit runs Python in that session."""
from __future__ import annotations

import importlib.util
import runpy
import sys
import types

HIDDEN = ("sklearn",)
BARE_PACKAGES = ("xgboost.spark",)


def lean_imports() -> None:
    """Hide scikit-learn and register ``xgboost.spark`` without running its ``__init__`` (in this process)."""
    for name in HIDDEN:
        sys.modules.setdefault(name, None)
    for name in BARE_PACKAGES:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            continue
        package = types.ModuleType(name)
        package.__path__, package.__spec__, package.__package__ = list(spec.submodule_search_locations), spec, name
        sys.modules[name] = package


def main() -> None:
    lean_imports()
    runpy.run_module("pyspark.worker", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
