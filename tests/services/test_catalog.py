import json

import pytest

from app.config import DEFAULT_CATALOG
from app.models import PlanInterval
from app.services.catalog import CatalogError, load_catalog


def test_the_shipped_catalog_is_valid():
    plans = load_catalog(DEFAULT_CATALOG)
    starter = next(plan for plan in plans if plan["code"] == "starter")
    assert starter["amount"] == 2000 and starter["currency"] == "usd" and starter["interval"] is PlanInterval.MONTH


def test_yaml_catalogs_are_read_too(tmp_path):
    path = tmp_path / "plans.yaml"
    path.write_text(
        "plans:\n  - {code: solo, provider_price_id: price_solo, name: Solo, amount: 500, currency: eur,"
        " interval: week, credits_per_period: 10}\n"
    )
    [plan] = load_catalog(path)
    assert (plan["code"], plan["interval"], plan["active"]) == ("solo", PlanInterval.WEEK, True)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ('{"plans": {}}', '"plans" list'),
        ('{"plans": [{"code": "x"}]}', "invalid plans"),
        (
            '{"plans": ['
            + ",".join(
                [
                    '{"code": "a", "provider_price_id": null, "name": "A", "amount": 1,'
                    ' "currency": "usd", "interval": "month", "credits_per_period": 1}'
                ]
                * 2
            )
            + "]}",
            "twice",
        ),
    ],
)
def test_a_broken_catalog_is_refused_with_the_reason(tmp_path, content, message):
    path = tmp_path / "plans.json"
    path.write_text(content)
    with pytest.raises(CatalogError, match=message):
        load_catalog(path)


def test_a_missing_catalog_is_named(tmp_path):
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(tmp_path / "absent.json")


@pytest.mark.parametrize("field, value", [("code", "solo\n"), ("currency", "eur\n")])
def test_a_code_with_a_trailing_newline_is_refused(tmp_path, field, value):
    plan = {
        "code": "solo",
        "provider_price_id": None,
        "name": "Solo",
        "amount": 500,
        "currency": "eur",
        "interval": "week",
        "credits_per_period": 10,
    }
    path = tmp_path / "plans.json"
    path.write_text(json.dumps({"plans": [{**plan, field: value}]}))
    with pytest.raises(CatalogError, match=field):
        load_catalog(path)
