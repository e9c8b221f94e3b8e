"""The registered model in MLflow: its versions, their tags and its two aliases; reads and raw alias moves.

No audit here: :class:`~training_lib.modeling.registry.Registry` builds on this and is the only writer that
records what it moved. Stages are deprecated and never used.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from datetime import date
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHAMPION = "champion"  # the version batch scoring loads (models:/<name>@champion)
CHALLENGER = "challenger"  # the latest candidate that did not beat the champion
THRESHOLD_TAG = "threshold"  # decision threshold stored on each model version (set by training)
EVALUATION_RUN_TAG = "evaluation_run_id"  # the run of the version's evaluation fit: the gate's evidence
LABELS_THROUGH_TAG = "labels_through"  # set by training on the model version: last label day it used
TRAINING_WINDOW_TAG = "training_window"  # "first..last" day the registered version was fitted on

_TAG_VALUE_LIMIT = 5000  # MLflow's model-version tag column


class RegistryError(RuntimeError):
    """A registry change could not be applied; the message says what state the registry was left in."""


class VersionNotFound(ValueError, LookupError):
    """The registered model has no such version (or does not exist)."""


def fitted_through(version: ModelVersion) -> date | None:
    """The last day ``version`` was fitted on (its ``training_window`` tag), None when unknown."""
    window = (version.tags or {}).get(TRAINING_WINDOW_TAG, "")
    return date.fromisoformat(window.split("..")[-1]) if window else None


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))


def _tag_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:_TAG_VALUE_LIMIT]


class RegisteredModel:
    """``settings.model_name`` in the MLflow registry: versions, tags, aliases (one MLflow call per change)."""

    def __init__(self, settings: Settings, client: MlflowClient | None = None) -> None:
        if client is None:
            from mlflow import MlflowClient

            client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)
        self.settings = settings
        self.name = settings.model_name
        self.client = client

    # -- reads ----------------------------------------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        """alias -> version of the registered model ({} when the model is not registered yet)."""
        from mlflow.exceptions import MlflowException

        try:
            return dict(self.client.get_registered_model(self.name).aliases)
        except MlflowException as exc:
            if _error_code(exc) in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
                return {}
            raise

    def _by_alias(self, alias: str) -> ModelVersion | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException:
            if alias not in self.aliases():  # the alias (or the model) does not exist: not an error
                return None
            raise

    def champion(self) -> ModelVersion | None:
        """The version carrying the champion alias, if any."""
        return self._by_alias(CHAMPION)

    def challenger(self) -> ModelVersion | None:
        """The version carrying the challenger alias, if any."""
        return self._by_alias(CHALLENGER)

    def version(self, version: str | int) -> ModelVersion:
        """One version of the model; :class:`VersionNotFound` (a ValueError) naming it when it does not exist."""
        from mlflow.exceptions import MlflowException

        text = str(version).strip()
        if not text.isdigit():
            raise VersionNotFound(f"model {self.name!r} has no version {version!r} (versions are numbers)")
        try:
            return self.client.get_model_version(self.name, text)
        except MlflowException as exc:
            if _error_code(exc) in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "INVALID_PARAMETER_VALUE"}:
                raise VersionNotFound(f"model {self.name!r} has no version {text}") from exc
            raise

    def threshold(self, version: ModelVersion) -> float:
        """The decision threshold stored on the version (tag ``threshold``)."""
        raw = (version.tags or {}).get(THRESHOLD_TAG)
        if raw is None:
            raise ValueError(
                f"model {self.name!r} version {version.version} has no {THRESHOLD_TAG!r} tag:"
                " training must store its decision threshold on the version"
            )
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0.0 <= value <= 1.0:
            raise ValueError(
                f"model {self.name!r} version {version.version}: tag {THRESHOLD_TAG!r}={raw!r} is not a score in [0, 1]"
            )
        return value

    # -- writes ---------------------------------------------------------------------------------------------------

    def _move_aliases(self, moves: list[tuple[str, str | None]]) -> None:
        """Apply ``(alias, version)`` moves in order (version None: remove the alias), one call each.

        When a call fails, the moves already applied are undone (best effort) and :class:`RegistryError` is raised.
        """
        before = self.aliases()
        applied: list[str] = []
        for alias, version in moves:
            try:
                self._set_alias(alias, version)
            except Exception as exc:
                undo_failures = self._restore_aliases(before, applied)
                state = (
                    "aliases restored to " + json.dumps(before, sort_keys=True)
                    if not undo_failures
                    else "could NOT restore aliases (" + "; ".join(undo_failures) + "); check the registry"
                )
                target = f"version {version}" if version is not None else "nothing (remove)"
                raise RegistryError(
                    f"model {self.name!r}: moving alias {alias!r} to {target} failed: {exc}; {state};"
                    " nothing was tagged or audited"
                ) from exc
            applied.append(alias)

    def _set_alias(self, alias: str, version: str | None) -> None:
        if version is None:
            self.client.delete_registered_model_alias(self.name, alias)
        else:
            self.client.set_registered_model_alias(self.name, alias, version)

    def _restore_aliases(self, before: dict[str, str], applied: Iterable[str]) -> list[str]:
        failures = []
        for alias in reversed(list(dict.fromkeys(applied))):
            try:
                self._set_alias(alias, before.get(alias))
            except Exception as exc:
                failures.append(f"{alias}: {exc}")
        return failures

    def _tag(self, version: str, tags: dict[str, Any]) -> list[str]:
        """Set tags on a version; the failures (logged, not raised: the aliases have already moved)."""
        failures = []
        for key, value in tags.items():
            if value is None:
                continue
            try:
                self.client.set_model_version_tag(self.name, version, key, _tag_value(value))
            except Exception as exc:
                log.warning("model %s version %s: tag %s not set: %s", self.name, version, key, exc)
                failures.append(f"v{version} {key}: {exc}")
        return failures
