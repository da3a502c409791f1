"""The plan catalog file (JSON or YAML) shipped in the repo or named by PLANS_CATALOG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from marshmallow import ValidationError

from app.schemas.plans import PlanSchema


class CatalogError(Exception):
    """The catalog file cannot be read or does not describe valid plans."""


def load_catalog(path: Path) -> list[dict[str, Any]]:
    """The plans the file describes, validated; CatalogError names what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"cannot read plan catalog {path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise CatalogError(f"plan catalog {path} is not valid {path.suffix.lstrip('.').upper()}: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("plans"), list):
        raise CatalogError(f'plan catalog {path} must be an object with a "plans" list')
    try:
        plans = PlanSchema(many=True).load(document["plans"])
    except ValidationError as exc:
        raise CatalogError(f"plan catalog {path} has invalid plans: {exc.messages}") from None
    codes = [plan["code"] for plan in plans]
    if len(codes) != len(set(codes)):
        raise CatalogError(f"plan catalog {path} lists a plan code twice")
    return plans
