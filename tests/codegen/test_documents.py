"""The generated documents: valid, current, and saying what dasync really does.

* every OpenAPI document validates with openapi-spec-validator, every AsyncAPI
  document with the official parser (no error-severity diagnostic);
* the specs of the examples committed under docs/specs/ are those generated today;
* AsyncAPI addresses are the subjects the NATS transport uses (namespace
  included), its headers are ``_wire``'s; the OpenAPI document is the
  gateway's table (``codegen._http``).
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from dasync._runtime import _wire
from dasync.cli._run import main_service_name
from dasync.codegen import _http as http
from dasync.transports.nats import naming

from .conftest import EXAMPLES, KINDS, ROOT, SAMPLE, Generated

SPECS = ROOT / "docs" / "specs"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("example", EXAMPLES)
def test_the_committed_specs_of_the_examples_are_current(
    generated: Generated, example: str, kind: str
) -> None:
    committed = SPECS / example / f"service.{kind}.json"
    command = f"dasync codegen all examples/{example}/service.py -o docs/specs/{example}"
    assert committed.is_file(), f"{committed} is missing: run '{command}'"
    today = generated.path(example, kind).read_bytes()
    assert committed.read_bytes() == today, f"{committed} is out of date: run '{command}'"


def test_the_openapi_documents_validate(generated: Generated) -> None:
    paths = [generated.path(name, "openapi") for name in (*EXAMPLES, "sample")]
    for path in [*paths, generated.secured_openapi]:
        validate(json.loads(path.read_text(encoding="utf-8")))


def test_the_asyncapi_documents_parse_without_errors(
    asyncapi_report: dict[str, list[dict[str, Any]]],
) -> None:
    assert len(asyncapi_report) == len(EXAMPLES) + 1
    failures = {
        path: [f"{d['code']} at {d['path']}: {d['message']}" for d in found if d["severity"] == 0]
        for path, found in asyncapi_report.items()
    }
    assert {p: f for p, f in failures.items() if f} == {}


def test_the_json_schema_documents_are_valid_2020_12(generated: Generated) -> None:
    for name in (*EXAMPLES, "sample"):
        Draft202012Validator.check_schema(generated.load(name, "jsonschema"))


# --- AsyncAPI: the real subjects and headers ---------------------------------------------------


def _address(channel: dict[str, Any], **values: str) -> str:
    address: str = channel["address"]
    for name, value in values.items():
        address = address.replace("{" + name + "}", value)
    assert "{" not in address, address
    return address


@pytest.mark.parametrize("namespace", ["", "staging"])
def test_asyncapi_addresses_are_the_transport_subjects(
    generated: Generated, namespace: str
) -> None:
    path = generated.staging_asyncapi if namespace else generated.path("sample", "asyncapi")
    channels = json.loads(path.read_text())["channels"]
    main = main_service_name(SimpleNamespace(__name__="service", __file__=str(SAMPLE)))  # type: ignore[arg-type]
    digest = main.rsplit("_", 1)[1]
    ns = namespace
    assert _address(channels["Orders.client"], identity="alice") == naming.client_subject(
        "Orders", "alice", ns
    )
    assert _address(channels["Orders.inbox"], identity="alice", inbox="x1") == (
        naming.inbox_subject(f"{_wire.INBOX_PREFIX}alice.x1", "Orders", ns)
    )
    assert _address(channels["Stock.from.Orders"]) == naming.call_subject("Stock", "Orders", ns)
    assert _address(channels["Orders.from.Stock"]) == naming.call_subject("Orders", "Stock", ns)
    assert _address(channels["Orders.from.main_service"], mainDigest=digest) == (
        naming.call_subject("Orders", main, ns)
    )
    assert _address(channels["main_service.from.Orders"], mainDigest=digest) == (
        naming.call_subject(main, "Orders", ns)
    )
    assert _address(channels["Orders.event.shipped"]) == naming.event_subject("Orders.shipped", ns)
    # a call's start: on the caller's own subjects of the callee's starts stream, the
    # routine made one token (ids of calls hold '/' and '.', so the token is a digest's)
    routine = "order-1/Orders.place.1"
    assert naming.token(routine, 200) != routine
    started = {"routine": naming.token(routine, 200)}
    assert _address(channels["Stock.start.Orders"], **started) == naming.start_subject(
        "Stock", "Orders", routine, ns
    )
    assert _address(channels["Orders.start.main_service"], mainDigest=digest, **started) == (
        naming.start_subject("Orders", main, routine, ns)
    )
    assert _address(channels["Stock.start.Orders"], routine="*") == naming.start_subjects(
        "Stock", "Orders", ns
    )
    stream = naming.starts_stream("Stock", ns)
    assert f"`{stream}`" in channels["Stock.start.Orders"]["description"]
    root = f"dasync-{ns}." if ns else "dasync."
    assert all(c["address"].startswith(root) for c in channels.values())


def test_asyncapi_follows_the_topology(generated: Generated) -> None:
    document = generated.load("sample", "asyncapi")
    channels, operations = document["channels"], document["operations"]
    # Orders calls Stock and Payments; main calls Orders; nobody calls Ledger (it takes
    # Orders, to subscribe: so it may call it, and gets Orders' replies on its lane)
    assert "Stock.from.Orders" in channels and "Payments.from.Orders" in channels
    assert "Orders.from.Ledger" in channels and "Ledger.from.Orders" in channels
    assert not any(o.startswith("Ledger.entries.call.from.") for o in operations)
    assert set(channels["Orders.from.Stock"]["messages"]) == {
        "Stock.take.result",
        "Stock.take.failure",
    }  # Stock's replies to Orders' calls come on Stock's lane into Orders
    call = operations["Stock.take.call.from.Orders"]
    assert call["action"] == "send"
    assert call["reply"]["channel"] == {"$ref": "#/channels/Orders.from.Stock"}
    # a call starts on the caller's start subjects of the callee; its cancels stay on the
    # caller's lane (which may carry a start too, when the starts stream cannot take it)
    assert call["channel"] == {"$ref": "#/channels/Stock.start.Orders"}
    assert call["messages"] == [{"$ref": "#/channels/Stock.start.Orders/messages/Stock.take.call"}]
    assert set(channels["Stock.start.Orders"]["messages"]) == {"Stock.take.call"}
    assert set(channels["Stock.start.Orders"]["parameters"]) == {"routine"}
    assert set(channels["Orders.start.main_service"]["parameters"]) == {"mainDigest", "routine"}
    assert operations["Stock.cancel.from.Orders"]["channel"] == {
        "$ref": "#/channels/Stock.from.Orders"
    }
    assert set(channels["Stock.from.Orders"]["messages"]) == {"Stock.take.call", "Stock.cancel"}
    for key, operation in operations.items():
        if ".call.from." in key:
            caller = key.rsplit(".from.", 1)[1]
            callee = key.split(".", 1)[0]
            assert operation["channel"] == {"$ref": f"#/channels/{callee}.start.{caller}"}, key
    assert not [c for c in channels if ".start." in c and c.split(".start.")[0] == "Ledger"]
    assert operations["Orders.place.call.client"]["reply"]["channel"] == {
        "$ref": "#/channels/Orders.inbox"
    }
    assert operations["Orders.shipped.receive"]["description"].endswith("Ledger.on_shipped")
    assert operations["Orders.shipped.receive"]["action"] == "receive"


def test_asyncapi_headers_are_the_wire_headers(generated: Generated) -> None:
    document = generated.load("sample", "asyncapi")
    known = {
        value
        for name, value in vars(_wire).items()
        if name.isupper() and isinstance(value, str) and value.startswith("dasync-")
    }
    messages = document["components"]["messages"]
    for message in messages.values():
        headers = message["headers"]
        assert set(headers["properties"]) <= known
        assert headers["properties"][_wire.VERSION] == {
            "const": _wire.WIRE_VERSION,
            "description": "the wire format's version; a worker refuses any other",
        }
    call = messages["Orders.place.call"]
    assert call["headers"]["properties"][_wire.METHOD] == {"const": "place"}
    assert call["correlationId"]["location"] == f"$message.header#/{_wire.ROUTINE}"
    assert call["payload"] == {"$ref": "#/components/schemas/Orders.place.arguments"}
    assert messages["Orders.place.failure"]["payload"] == {
        "$ref": "#/components/schemas/Orders.place.failure"
    }
    assert messages["Orders.place.failure"]["headers"]["properties"][_wire.OK] == {"const": "0"}


def test_asyncapi_schemas_are_draft_07(generated: Generated) -> None:
    text = generated.path("sample", "asyncapi").read_text()
    assert '"prefixItems"' not in text and '"$defs"' not in text
    assert "#/components/schemas/" in text


# --- OpenAPI: the gateway's table ---------------------------------------------------------------


def test_openapi_operations(generated: Generated) -> None:
    document = generated.load("sample", "openapi")
    assert document["openapi"] == "3.1.0"
    paths = document["paths"]
    place = paths["/Orders/place"]["post"]
    assert place["operationId"] == "Orders.place"
    assert place["tags"] == ["Orders"]
    assert place["summary"] == "Places an order."
    assert place["requestBody"]["required"] is True
    ok = place["responses"]["200"]
    assert set(ok["headers"]) == {http.LOCATION, http.ROUTINE_ID, http.PREFERENCE_APPLIED}
    declared = place["responses"]["422"]["content"][http.PROBLEM_JSON]["schema"]["anyOf"]
    assert {"$ref": "#/components/schemas/http.error.service.OutOfStock"} in declared
    assert {"$ref": "#/components/schemas/http.error.service.Declined"} in declared
    assert "401" not in place["responses"] and "security" not in document
    assert set(paths) >= {http.ROUTINE_PATH, http.OPENAPI_PATH, "/Ledger/entries"}
    statuses = {s for op in paths[http.ROUTINE_PATH].values() if isinstance(op, dict)
                for s in op.get("responses", {})}  # fmt: skip
    assert {"200", "202", "404"} <= statuses
    tags = {t["name"]: t.get("description") for t in document["tags"]}
    assert tags["Orders"] == "Takes orders: reserves the stock, charges, ships."


def test_openapi_problems_are_the_gateway_table(generated: Generated) -> None:
    schemas = generated.load("sample", "openapi")["components"]["schemas"]
    for problem in http.PROBLEMS:
        schema = schemas[f"http.problem.{problem.key}"]
        assert schema["properties"]["type"] == {"const": problem.type}
        assert schema["properties"]["status"] == {"const": problem.status}
    stock = schemas["http.error.service.OutOfStock"]["properties"]
    assert stock["type"] == {"const": http.error_problem_type("service:OutOfStock")}
    assert stock["status"] == {"const": http.DECLARED_ERROR_STATUS}
    assert stock["exception"] == {
        "const": "service:OutOfStock",
        "description": http.EXCEPTION_MEMBERS["exception"],
    }
    assert list(stock["fields"]["properties"]) == ["sku", "available"]


def test_openapi_security_only_when_asked(generated: Generated) -> None:
    plain = generated.load("sample", "openapi")
    secured = json.loads(generated.secured_openapi.read_text())
    schemes = {"bearerAuth", "apiKeyAuth"}
    assert set(plain["components"]["securitySchemes"]) == schemes  # offered, not required
    assert secured["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    place = secured["paths"]["/Orders/place"]["post"]["responses"]
    assert {"401", "403"} <= set(place)
    assert secured["paths"][http.OPENAPI_PATH]["get"]["security"] == []


# --- the JSON Schema document ---------------------------------------------------------------------


def test_the_json_schema_document_holds_every_root(generated: Generated) -> None:
    defs = generated.load("sample", "jsonschema")["$defs"]
    for name in (
        "Orders.place.arguments",
        "Orders.place.result",
        "Orders.place.failure",
        "Orders.shipped.event",
        "Stock.take.failure",
        "Ledger.entries.result",
        "service.OutOfStock.error",
        "service.Declined.error",
    ):
        assert name in defs, name
    assert "Ledger.entries.failure" not in defs  # it declares no error
    arguments = defs["Orders.place.arguments"]
    assert arguments["description"].startswith("Places an order.")
    assert arguments["properties"]["gift"]["default"] is False
    line = defs["Line-Input"]
    assert line["description"] == "One line of an order."
    assert line["properties"]["sku"]["description"] == "The article's stock-keeping unit."
    assert not any(re.search(r"[A-Z]:\\|/home/|/tmp/|/work/", str(v)) for v in defs.values())
