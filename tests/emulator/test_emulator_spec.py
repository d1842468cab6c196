"""Every kind of answer the emulator gives validates against Twilio's own OpenAPI spec (tests/openapi/)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.kit.spec import StudioHttp, operation_for, spec_errors
from tests.kit.studio import listed_views
from twilio_studio.emulator import Dataset, Emulator

SEEDS = (1, 2, 3)
FLOWS = 3
ENGAGEMENTS_PER_FLOW = 120
WINDOW = {"DateCreatedFrom": "2026-02-26T00:00:00Z", "DateCreatedTo": "2026-03-01T00:00:00Z"}


@dataclass
class Seeded:
    """One running emulator and the engagements whose sub-resources the tests read."""

    emulator: Emulator
    http: StudioHttp
    flow_sids: list[str]
    samples: list[tuple[str, str]]  # (flow sid, engagement sid)

    def steps(self, flow_sid: str, sid: str) -> list[str]:
        """The step SIDs of engagement ``sid`` of flow ``flow_sid`` as the dataset has them now."""
        dataset = self.emulator.dataset
        flow = dataset.flows_by_sid[flow_sid]
        i = dataset.locate(flow, sid)
        assert i is not None
        return [s.sid for s in dataset.view(dataset.script(flow, i), self.emulator.now()).steps]


def _samples(emulator: Emulator) -> list[tuple[str, str]]:
    """Per flow: the newest, the oldest, every 15th, and every special case (active, null date, hidden context)."""
    picked: list[tuple[str, str]] = []
    for flow in emulator.dataset.flows:
        views = [view for view in listed_views(emulator) if view.script.flow == flow]
        for n, view in enumerate(views):
            script = view.script
            special = view.status == "active" or view.date_updated is None or script.context_only_on_endpoint
            if special or n in (0, len(views) - 1) or script.index % 15 == 0:
                picked.append((flow.sid, script.sid))
    return picked


@pytest.fixture(scope="module", params=SEEDS, ids=lambda seed: f"seed{seed}")
def seeded(request: pytest.FixtureRequest) -> Iterator[Seeded]:
    dataset = Dataset(seed=request.param, flows=FLOWS, engagements_per_flow=ENGAGEMENTS_PER_FLOW)
    with Emulator(dataset) as emulator:
        yield Seeded(
            emulator=emulator,
            http=StudioHttp(emulator.base_url),
            flow_sids=[f.sid for f in dataset.flows],
            samples=_samples(emulator),
        )


# ------------------------------------------------------------------------ paths per operation
Paths = Callable[[Seeded], list[str]]


def per_flow(template: str, **query: str) -> Paths:
    suffix = "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    return lambda s: [template.format(flow=f) + suffix for f in s.flow_sids]


def per_engagement(template: str) -> Paths:
    return lambda s: [template.format(flow=f, sid=e) for f, e in s.samples]


def per_step(template: str) -> Paths:
    return lambda s: [template.format(flow=f, sid=e, step=step) for f, e in s.samples for step in s.steps(f, e)]


ENG = "/v1/Flows/{flow}/Engagements/{sid}"
EXE1 = "/v1/Flows/{flow}/Executions/{sid}"
EXE2 = "/v2/Flows/{flow}/Executions/{sid}"

OPERATIONS = [
    pytest.param("v1", "ListFlow", lambda s: ["/v1/Flows", "/v1/Flows?PageSize=1"], id="v1_flows_list"),
    pytest.param("v1", "FetchFlow", per_flow("/v1/Flows/{flow}"), id="v1_flow_fetch"),
    pytest.param("v2", "ListFlow", lambda s: ["/v2/Flows", "/v2/Flows?PageSize=1"], id="v2_flows_list"),
    pytest.param("v2", "FetchFlow", per_flow("/v2/Flows/{flow}"), id="v2_flow_fetch"),
    pytest.param("v2", "ListFlowRevision", per_flow("/v2/Flows/{flow}/Revisions", PageSize="2"),
                 id="v2_flow_revisions_list"),
    pytest.param("v2", "FetchFlowRevision", per_flow("/v2/Flows/{flow}/Revisions/1"), id="v2_flow_revision_fetch"),
    pytest.param("v2", "FetchFlowRevision", per_flow("/v2/Flows/{flow}/Revisions/LatestPublished"),
                 id="v2_flow_revision_latest_published"),
    pytest.param("v1", "ListEngagement", per_flow("/v1/Flows/{flow}/Engagements", PageSize="50"),
                 id="v1_engagements_list"),
    pytest.param("v1", "FetchEngagement", per_engagement(ENG), id="v1_engagement_fetch"),
    pytest.param("v1", "FetchEngagementContext", per_engagement(ENG + "/Context"), id="v1_engagement_context"),
    pytest.param("v1", "ListStep", per_engagement(ENG + "/Steps?PageSize=3"), id="v1_engagement_steps_list"),
    pytest.param("v1", "FetchStep", per_step(ENG + "/Steps/{step}"), id="v1_engagement_step_fetch"),
    pytest.param("v1", "FetchStepContext", per_step(ENG + "/Steps/{step}/Context"),
                 id="v1_engagement_step_context"),
    pytest.param("v1", "ListExecution", per_flow("/v1/Flows/{flow}/Executions", PageSize="50"),
                 id="v1_executions_list"),
    pytest.param("v1", "ListExecution", per_flow("/v1/Flows/{flow}/Executions", PageSize="20", **WINDOW),
                 id="v1_executions_list_date_created_window"),
    pytest.param("v1", "FetchExecution", per_engagement(EXE1), id="v1_execution_fetch"),
    pytest.param("v1", "FetchExecutionContext", per_engagement(EXE1 + "/Context"), id="v1_execution_context"),
    pytest.param("v1", "ListExecutionStep", per_engagement(EXE1 + "/Steps?PageSize=3"),
                 id="v1_execution_steps_list"),
    pytest.param("v1", "FetchExecutionStep", per_step(EXE1 + "/Steps/{step}"), id="v1_execution_step_fetch"),
    pytest.param("v1", "FetchExecutionStepContext", per_step(EXE1 + "/Steps/{step}/Context"),
                 id="v1_execution_step_context"),
    pytest.param("v2", "ListExecution", per_flow("/v2/Flows/{flow}/Executions", PageSize="50"),
                 id="v2_executions_list"),
    pytest.param("v2", "ListExecution", per_flow("/v2/Flows/{flow}/Executions", PageSize="20", **WINDOW),
                 id="v2_executions_list_date_created_window"),
    pytest.param("v2", "ListExecution", per_flow("/v2/Flows/{flow}/Executions", status="active"),
                 id="v2_executions_list_status_active"),
    pytest.param("v2", "ListExecution", per_flow("/v2/Flows/{flow}/Executions", status="ended", PageSize="30"),
                 id="v2_executions_list_status_ended"),
    pytest.param("v2", "FetchExecution", per_engagement(EXE2), id="v2_execution_fetch"),
    pytest.param("v2", "FetchExecutionContext", per_engagement(EXE2 + "/Context"), id="v2_execution_context"),
    pytest.param("v2", "ListExecutionStep", per_engagement(EXE2 + "/Steps?PageSize=3"),
                 id="v2_execution_steps_list"),
    pytest.param("v2", "FetchExecutionStep", per_step(EXE2 + "/Steps/{step}"), id="v2_execution_step_fetch"),
    pytest.param("v2", "FetchExecutionStepContext", per_step(EXE2 + "/Steps/{step}/Context"),
                 id="v2_execution_step_context"),
]  # fmt: skip


@pytest.mark.parametrize(("version", "operation_id", "paths"), OPERATIONS)
def test_every_answer_matches_twilios_spec(seeded: Seeded, version: str, operation_id: str, paths: Paths) -> None:
    validated = 0
    for path in paths(seeded):
        op = operation_for(path)
        assert (op.version, op.operation_id) == (version, operation_id)
        bodies = seeded.http.pages(path) if op.operation_id.startswith("List") else [seeded.http.json(path)]
        for body in bodies:
            assert spec_errors(path, body) == []
            validated += len(body[body["meta"]["key"]]) if "meta" in body else 1
    assert validated > 0, "nothing was validated: the dataset has no such resource"


def test_spec_validation_rejects_what_twilio_would_not_send(seeded: Seeded) -> None:
    """The validator is strict enough to catch an extra field, a missing one, a bad date or a bad SID."""
    path = f"/v1/Flows/{seeded.flow_sids[0]}/Engagements"
    body = seeded.http.json(path, PageSize=5)
    first, second, third, fourth, fifth = body["engagements"]
    first["extra"] = 1
    del second["links"]
    third["date_created"] = "2026-03-01 12:00:00"
    fourth["sid"] = "FT" + fourth["sid"][2:]
    fifth["status"] = "finished"
    body["meta"]["next_page_url"] = "/v1/relative"
    errors = spec_errors(path, body)
    assert [e.split(":")[0] for e in errors] == [
        "ListEngagement at /engagements/0",
        "ListEngagement at /engagements/1",
        "ListEngagement at /engagements/2/date_created",
        "ListEngagement at /engagements/3/sid",
        "ListEngagement at /engagements/4/status",
        "ListEngagement at /meta/next_page_url",
    ]


# ------------------------------------------------------------------------ SIDs
SID_FIELDS = [
    pytest.param("flows", "sid", "FW", id="flow_sid"),
    pytest.param("flows", "account_sid", "AC", id="flow_account_sid"),
    pytest.param("engagements", "sid", "FN", id="engagement_sid"),
    pytest.param("engagements", "account_sid", "AC", id="engagement_account_sid"),
    pytest.param("engagements", "flow_sid", "FW", id="engagement_flow_sid"),
    pytest.param("engagements", "contact_sid", "FC", id="engagement_contact_sid"),
    pytest.param("executions", "sid", "FN", id="execution_sid"),
    pytest.param("steps", "sid", "FT", id="step_sid"),
    pytest.param("steps", "engagement_sid", "FN", id="step_engagement_sid"),
    pytest.param("steps", "flow_sid", "FW", id="step_flow_sid"),
]


@pytest.fixture(scope="module")
def listed(seeded: Seeded) -> dict[str, list[dict[str, object]]]:
    """Every flow, engagement and v2 execution the emulator lists, and the steps of the sampled engagements."""
    http = seeded.http
    out: dict[str, list[dict[str, object]]] = {
        "flows": http.records("/v1/Flows"), "engagements": [], "executions": [], "steps": []
    }  # fmt: skip
    for flow in seeded.flow_sids:
        out["engagements"] += http.records(f"/v1/Flows/{flow}/Engagements", PageSize=1000)
        out["executions"] += http.records(f"/v2/Flows/{flow}/Executions", PageSize=1000)
    for flow, sid in seeded.samples:
        out["steps"] += http.records(f"/v1/Flows/{flow}/Engagements/{sid}/Steps")
    return out


@pytest.mark.parametrize(("resource", "field", "prefix"), SID_FIELDS)
def test_sids_are_two_letters_and_32_hex_digits(
    listed: dict[str, list[dict[str, object]]], resource: str, field: str, prefix: str
) -> None:
    pattern = re.compile(rf"^{prefix}[0-9a-f]{{32}}$")
    values = [r[field] for r in listed[resource]]
    assert values
    assert [v for v in values if not (isinstance(v, str) and pattern.match(v))] == []


@pytest.mark.parametrize("resource", ["flows", "engagements", "executions", "steps"])
def test_sids_are_unique_across_the_account(listed: dict[str, list[dict[str, object]]], resource: str) -> None:
    sids = [r["sid"] for r in listed[resource]]
    assert len(sids) == len(set(sids)) > 0


def test_flow_counts_match_the_dataset(listed: dict[str, list[dict[str, object]]]) -> None:
    assert len(listed["flows"]) == FLOWS
    assert len(listed["engagements"]) == len(listed["executions"]) == FLOWS * ENGAGEMENTS_PER_FLOW


# ------------------------------------------------------------------------ meta
LISTS = [
    pytest.param("/v1/Flows", "flows", id="v1_flows"),
    pytest.param("/v2/Flows", "flows", id="v2_flows"),
    pytest.param("/v2/Flows/{flow}/Revisions", "revisions", id="v2_flow_revisions"),
    pytest.param("/v1/Flows/{flow}/Engagements", "engagements", id="v1_engagements"),
    pytest.param("/v1/Flows/{flow}/Executions", "executions", id="v1_executions"),
    pytest.param("/v2/Flows/{flow}/Executions", "executions", id="v2_executions"),
    pytest.param("/v1/Flows/{flow}/Engagements/{sid}/Steps", "steps", id="v1_engagement_steps"),
    pytest.param("/v1/Flows/{flow}/Executions/{sid}/Steps", "steps", id="v1_execution_steps"),
    pytest.param("/v2/Flows/{flow}/Executions/{sid}/Steps", "steps", id="v2_execution_steps"),
]


@pytest.mark.parametrize(("template", "key"), LISTS)
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_meta_names_the_key_and_gives_absolute_urls_on_the_requests_host(
    seeded: Seeded, template: str, key: str, host: str
) -> None:
    flow, sid = next((f, e) for f, e in seeded.samples if len(seeded.steps(f, e)) >= 3)
    path = template.format(flow=flow, sid=sid)
    port = urlsplit(seeded.emulator.base_url).port
    origin = f"http://{host}:{port}"
    r = seeded.http.session.get(
        f"{seeded.emulator.base_url}{path}", params={"PageSize": 2}, headers={"Host": f"{host}:{port}"}
    )
    assert r.status_code == 200
    body = r.json()
    meta = body["meta"]
    assert sorted(body) == sorted([key, "meta"])
    assert meta["key"] == key
    assert (meta["page"], meta["page_size"], meta["previous_page_url"]) == (0, 2, None)
    assert len(body[key]) == 2
    for name in ("url", "first_page_url", "next_page_url"):
        url = urlsplit(meta[name])
        assert f"{url.scheme}://{url.netloc}" == origin, name
        assert url.path == path, name
        assert parse_qs(url.query)["PageSize"] == ["2"], name
    assert "PageToken" not in parse_qs(urlsplit(meta["first_page_url"]).query)
    assert all(record["url"].startswith(origin + "/") for record in body[key])
