"""Libraries the platform's tasks use, imported once by the executor's forkserver.

The local stack sets ``[scheduler] mp_start_method = forkserver`` and ``[core] mp_forkserver_preload`` to
this module: LocalExecutor workers fork from a process that has already imported them, and every task
process (forked by its worker) inherits them copy-on-write instead of spending seconds importing Great
Expectations, Evidently and MLflow again. DAG files still import nothing heavy at parse time.
"""

from __future__ import annotations

import boto3  # noqa: F401
import evidently  # noqa: F401
import great_expectations  # noqa: F401
import mlflow  # noqa: F401
import pandas  # noqa: F401
import pyarrow.parquet  # noqa: F401
import sklearn  # noqa: F401
import xgboost  # noqa: F401

import training_lib.ingestion.ingest
import training_lib.ingestion.quality
import training_lib.modeling.registry
import training_lib.modeling.train
import training_lib.monitoring.daily_drift
import training_lib.monitoring.drift
import training_lib.scoring.batch  # noqa: F401
