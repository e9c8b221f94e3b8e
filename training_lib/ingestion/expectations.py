"""Great Expectations plumbing: the suite files of ``include/gx/``, one ephemeral validation, its Data Docs.

GX never sees a card number or a name: the callers leave ``HIDDEN_FROM_GX`` out of the frame and hand
``cc_num`` in masked (:func:`mask_card_numbers`), so the Data Docs can show no real card number.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training_lib.config import PROJECT_ROOT

if TYPE_CHECKING:
    import pandas as pd

SUITE_DIR = PROJECT_ROOT / "include" / "gx"
ROW_ID = "_row"
HIDDEN_FROM_GX = ("first", "last", "street")  # never handed to GX, so never in Data Docs
DATA_DOCS_SKIP = ("static/fonts/",)


def load_suite(name: str) -> dict[str, Any]:
    """The suite definition ``include/gx/<name>_suite.json`` as a dict."""
    path = SUITE_DIR / f"{name}_suite.json"
    return json.loads(path.read_text())


def run_suite(
    suite_name: str, frame: pd.DataFrame, parameters: dict[str, Any], docs_dir: Path | None
) -> tuple[dict[int, list[str]], list[dict[str, Any]]]:
    """Validate ``frame`` (with a ``_row`` column) against a suite file.

    Returns row id -> failed reasons, and one compact result per expectation. When ``docs_dir`` is
    given, GX Data Docs for this validation are built there.
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("lake")
        .add_dataframe_asset(suite_name)
        .add_batch_definition_whole_dataframe(f"{suite_name}-day")
    )
    suite = context.suites.add(gx.ExpectationSuite(**load_suite(suite_name)))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=suite_name, data=batch, suite=suite))
    result_format = {"result_format": "COMPLETE", "unexpected_index_column_names": [ROW_ID]}
    actions = []
    if docs_dir is not None:
        context.update_data_docs_site(
            "local_site",
            {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs"))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{suite_name}-checkpoint",
            validation_definitions=[definition],
            actions=actions,
            result_format=result_format,
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame}, expectation_parameters=parameters)
    failures: dict[int, list[str]] = {}
    compact = []
    for run_result in result.run_results.values():
        for expectation_result in run_result.results:
            config = expectation_result.expectation_config
            reason = (config.meta or {}).get("reason", f"{config.type}({config.kwargs.get('column')})")
            raised = (expectation_result.exception_info or {}).get("raised_exception")
            if raised:
                message = expectation_result.exception_info.get("exception_message")
                raise RuntimeError(f"GX expectation {config.type} on {config.kwargs.get('column')} failed: {message}")
            rows = [int(item[ROW_ID]) for item in expectation_result.result.get("unexpected_index_list") or []]
            for row in rows:
                failures.setdefault(row, []).append(reason)
            compact.append(
                {
                    "expectation": config.type,
                    "column": config.kwargs.get("column"),
                    "reason": reason,
                    "success": bool(expectation_result.success),
                    "unexpected_count": len(rows),
                }
            )
    return failures, compact


def not_null_columns(suite_name: str) -> set[str]:
    return {
        e["kwargs"]["column"]
        for e in load_suite(suite_name)["expectations"]
        if e["type"] == "expect_column_values_to_not_be_null"
    }


def mask_card_numbers(values: pd.Series) -> pd.Series:
    """Every digit replaced by 0: same length, same shape, no card number."""
    return values.astype("string").str.replace(r"\d", "0", regex=True)


def data_docs_files(docs_dir: Path) -> list[tuple[str, Path]]:
    """(relative path, file) of the Data Docs site to publish; fonts are left out (4 MB, cosmetic)."""
    out = []
    for path in sorted(docs_dir.rglob("*")):
        relative = path.relative_to(docs_dir).as_posix()
        if path.is_file() and not relative.startswith(DATA_DOCS_SKIP):
            out.append((relative, path))
    return out


def temporary_docs_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="gx-docs-"))
