"""The model a scoring run uses: ``@champion`` resolved once, then exactly that version, with its threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from training_lib.config import Settings

if TYPE_CHECKING:
    import numpy as np


class NoChampion(RuntimeError):
    """No model version carries the champion alias yet."""


@dataclass
class Champion:
    """One exact model version as a scoring run uses it."""

    name: str
    version: str
    run_id: str
    threshold: float
    model: Any  # the sklearn pipeline (features -> XGBoost); None until loaded
    fitted_through: str | None = None  # the last day the version was fitted on (ISO), None when unknown


def resolve_champion(settings: Settings) -> Champion:
    """``@champion`` now, with its stored threshold and last fitted day; the model is not loaded."""
    from training_lib.modeling.aliases import fitted_through
    from training_lib.modeling.registry import Registry

    registry = Registry(settings)
    version = registry.champion()
    if version is None:
        raise NoChampion(f"no version of {settings.model_name!r} has the alias 'champion' yet: run the retrain DAG")
    through = fitted_through(version)
    return Champion(
        settings.model_name, str(version.version), version.run_id, registry.threshold(version), None,
        through.isoformat() if through else None,
    )  # fmt: skip


def champion_of_plan(settings: Settings, spec: dict[str, Any]) -> Champion:
    """Exactly the version a plan's spec names, loaded."""
    name, version = spec["model_name"], spec["model_version"]
    model = _load_model(settings, name, version)
    return Champion(name, version, spec["model_run_id"], spec["threshold"], model, spec.get("model_fitted_through"))


def _load_model(settings: Settings, name: str, version: str) -> Any:
    """Exactly ``models:/<name>/<version>`` (never an alias)."""
    import mlflow.sklearn

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return mlflow.sklearn.load_model(f"models:/{name}/{version}")


def load_champion(settings: Settings) -> Champion:
    """Resolve ``@champion`` now and load that exact version (the run then sticks to it)."""
    champion = resolve_champion(settings)
    champion.model = _load_model(settings, champion.name, champion.version)
    return champion


def decisions(scores: np.ndarray, threshold: float) -> np.ndarray:
    """1 where the score reaches the model's stored threshold."""
    import numpy as np

    return (scores >= threshold).astype(np.int8)
