"""Property-based run of Twilio's own OpenAPI specs (tests/openapi/) against the emulator, with
schemathesis: every operation the emulator serves (every GET of v1, the v2 Executions reads, and the
seeds' writes), with data the spec allows and data it refuses, checking status codes, content types,
response schemas and that invalid input is refused.

The vendored specs stay verbatim: Twilio documents its error answers apart from them (API-NOTES
"Errors and limits"), so this test adds, in memory, the error statuses and Twilio's error body to
every operation before handing the specs over.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi import checks as st

from tests.emulator.emulator_kit import ACCOUNT_AUTH, SPEC_DIR
from twilio_studio.emulator import Dataset, Emulator

# operations the emulator does not serve: Flow management of v2 (and v1's DeleteFlow) is not among
# the seeds' operations, and the connector never calls it
NOT_SERVED = {
    "DeleteFlow", "CreateFlow", "UpdateFlow", "ListFlowRevision", "FetchFlowRevision", "UpdateFlowValidate",
    "FetchTestUser", "UpdateTestUser",
}  # fmt: skip
V2_FLOW_READS = {"ListFlow", "FetchFlow"}  # v2's Flows: not served (v1's are)
TWILIO_ERROR = {
    "type": "object",
    "required": ["code", "message", "more_info", "status"],
    "additionalProperties": False,
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "more_info": {"type": "string", "pattern": "^https://www\\.twilio\\.com/docs/errors/[0-9]+$"},
        "status": {"type": "integer"},
    },
}
ERRORS = {"400": "Bad request", "401": "Authenticate", "404": "Not found", "405": "Method not allowed"}
MAX_EXAMPLES = 50  # per operation: about a second each, the whole run well under a minute


def served_spec(version: str) -> dict[str, Any]:
    spec: dict[str, Any] = orjson.loads((SPEC_DIR / f"twilio_studio_{version}.json").read_bytes())
    spec = copy.deepcopy(spec)
    for path in list(spec["paths"]):
        methods = spec["paths"][path]
        for method in list(methods):
            op = methods[method]
            if not isinstance(op, dict) or "operationId" not in op:
                continue
            if op["operationId"] in NOT_SERVED or (version == "v2" and op["operationId"] in V2_FLOW_READS):
                del methods[method]
                continue
            for status, description in ERRORS.items():
                op["responses"][status] = {
                    "description": description,
                    "content": {"application/json": {"schema": TWILIO_ERROR}},
                }
        if not any(isinstance(v, dict) and "operationId" in v for v in methods.values()):
            del spec["paths"][path]
    return spec


CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
        "auth": {"basic": {"username": ACCOUNT_AUTH[0], "password": ACCOUNT_AUTH[1]}},
        "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    }
)
V1 = schemathesis.openapi.from_dict(served_spec("v1"), config=CONFIG)
V2 = schemathesis.openapi.from_dict(served_spec("v2"), config=CONFIG)


class Live:
    """One emulator for the module, and real SIDs to put into generated paths."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        d, now = emulator.dataset, emulator.now()
        picks = []
        for flow in d.flows:
            lo, hi = d.index_range(flow, now)
            for i in range(lo, hi, 7):
                view = d.view(d.script(flow, i), now)
                steps = [s.sid for s in view.steps] or ["FT" + "0" * 32]
                picks.append({"FlowSid": flow.sid, "Sid": view.script.sid, "Step": steps[i % len(steps)]})
        self._picks = itertools.cycle(picks)

    def real_path(self, case: Any) -> None:
        """Puts real SIDs into the path, so answers are records (not only 404s for SIDs that do not
        exist) and the query, body or headers are what a negative case tests.

        A case whose path is its only invalid part keeps it: then the answer must refuse the path.
        """
        meta = case.meta
        negative = {loc for loc, c in meta.components.items() if c.mode.is_negative} if meta else set()
        if negative == {ParameterLocation.PATH}:
            return
        pick = next(self._picks)
        params = dict(case.path_parameters or {})
        for name in params:
            if name == "FlowSid":
                params[name] = pick["FlowSid"]
            elif name in ("Sid", "EngagementSid", "ExecutionSid"):
                is_step = name == "Sid" and "/Steps/" in case.path
                params[name] = pick["Step"] if is_step else pick["Sid"]
            elif name == "StepSid":
                params[name] = pick["Step"]
        if "{Sid}" in case.path and "FlowSid" not in params:  # FetchFlow
            params["Sid"] = pick["FlowSid"]
        case.path_parameters = params


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    with Emulator(Dataset(seed=3, flows=2, engagements_per_flow=300)) as emulator:
        yield Live(emulator)


# Where Twilio is stricter than its spec's schema, a 400 answers data the schema allows: a PageToken
# the API did not issue (error 21481), To/From that are no address (the schema's `phone-number`
# format is not checked), Parameters that are no JSON object, and UpdateExecution's Status, which
# "can only be ended" (its description) while the schema's enum also lists active.
STRICTER_THAN_THE_SCHEMA = (
    "Invalid PageToken",
    "Missing required parameter To ", "Missing required parameter From ", "Missing required parameter Status ",
    "Invalid 'To' Phone Number", "Invalid 'From' Phone Number", "Invalid Parameters", "Invalid Status",
)  # fmt: skip


def valid_data_is_accepted(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' positive_data_acceptance, less the 400s where Twilio is stricter than its schema."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code < 400 or response.status_code in (401, 404):  # 404: SIDs that do not exist
        return None
    message = response.json().get("message", "") if response.status_code == 400 else ""
    if response.status_code == 400 and message.startswith(STRICTER_THAN_THE_SCHEMA):
        return None
    raise AssertionError(f"data the spec allows was refused: {response.status_code} {message}")


CHECKS = [
    not_a_server_error,
    st.status_code_conformance,
    st.content_type_conformance,
    st.response_headers_conformance,
    st.response_schema_conformance,
    st.negative_data_rejection,  # invalid data gets a 4xx
    valid_data_is_accepted,  # instead of st.positive_data_acceptance (see STRICTER_THAN_THE_SCHEMA)
    st.ignored_auth,  # requests without valid credentials get 401
]


def check(case: Any, live: Live) -> None:
    live.real_path(case)
    response = case.call(base_url=live.emulator.base_url, timeout=10)
    case.validate_response(response, checks=CHECKS)


SETTINGS = settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)


@V1.parametrize()
@SETTINGS
def test_v1_conforms_to_twilios_spec(case: Any, live: Live) -> None:
    check(case, live)


@V2.parametrize()
@SETTINGS
def test_v2_conforms_to_twilios_spec(case: Any, live: Live) -> None:
    check(case, live)


def test_the_run_reached_records_and_errors(live: Live) -> None:
    """Runs after the generated cases (same module): they created, deleted, read and were refused."""
    seen = live.emulator.stats.by_status
    assert {200, 201, 204, 400, 401, 404} <= set(seen), dict(seen)
    assert seen[200] > 200 and seen[400] > 100, dict(seen)
