"""A compromised or broken API: every answer gets a defined behaviour, never a crash or a silent loss.

Either the run stops with a sentence naming the flow (and no request goes where it must not), or
the bad record is skipped, counted and logged, and every other record loads.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from tests.kit.cli import cli
from tests.kit.duck import Loaded
from tests.kit.loopback import Answer, DynamicStudio, engagement, flow, page, routes
from tests.kit.studio import failure_text, make_source, source_env

FLOW = "FW" + "3" * 32
OTHER_FLOW = "FW" + "4" * 32
LIST = f"/v1/Flows/{FLOW}/Engagements"
FIRST = f"{LIST}?PageSize=1000"


def studio_routes(first_page: dict[str, Any], **more: Answer) -> dict[str, Answer]:
    return {f"/v1/Flows/{FLOW}": Answer(200, flow(FLOW)), FIRST: Answer(200, first_page), **more}


# ---------------------------------------------------------------------------- requests that must not be sent
@pytest.mark.parametrize(
    ("next_url", "message"),
    [
        pytest.param(
            "http://{foreign}\\@{home}" + LIST + "?Page=1",
            "which is not base_url's host; refusing to send credentials there",
            id="backslash_before_userinfo",  # urlsplit reads {home}; requests would connect to {foreign}
        ),
        pytest.param(
            "http://{home}@{foreign}" + LIST + "?Page=1",
            "which is not base_url's host; refusing to send credentials there",
            id="home_as_userinfo",
        ),
        pytest.param(
            "http://{home} 1" + LIST,
            "meta.next_page_url is not a URL the connector can follow",
            id="unparsable_port",
        ),
    ],
)
def test_deceptive_next_page_urls_are_refused_before_any_request(loaded: Loaded, next_url: str, message: str) -> None:
    with DynamicStudio(routes({})) as foreign:
        table: dict[str, Answer] = {}
        with DynamicStudio(routes(table)) as studio:
            home, away = studio.base_url.split("//")[1], foreign.base_url.split("//")[1]
            url = next_url.replace("{home}", home).replace("{foreign}", away)
            table.update(studio_routes(page("engagements", [engagement(FLOW, 1)], url)))
            with pytest.raises(PipelineStepFailed) as err:
                loaded.run(make_source(studio.base_url, flow_sids=[FLOW]))
            # the flow's v2 definition (answered 404 here) is asked of the same host; the list's
            # deceptive next page is never requested
            v1 = [r.path for r in studio.requests if not r.path.startswith("/v2/")]
            assert v1 == [f"/v1/Flows/{FLOW}", FIRST]
        assert foreign.requests == []  # not one request, so no credentials either
    assert f"flow {FLOW}: " in failure_text(err) and message in failure_text(err)


def test_a_redirect_is_never_followed(loaded: Loaded) -> None:
    with DynamicStudio(routes({LIST: Answer(200, page("engagements", [], None))})) as foreign:
        table = studio_routes(
            page("engagements", [engagement(FLOW, 1)], None),
        )
        table[FIRST] = Answer(302, {}, {"Location": foreign.base_url + LIST})
        with DynamicStudio(routes(table)) as studio, pytest.raises(PipelineStepFailed) as err:
            loaded.run(make_source(studio.base_url, flow_sids=[FLOW]))
        assert foreign.requests == []
    host = foreign.base_url.split("//")[1]
    assert (
        f"flow {FLOW}: GET {LIST} answered HTTP 302: a redirect to http://{host}; the connector follows no "
        "redirects, so credentials stay on base_url's host" in failure_text(err)
    ), failure_text(err)


def test_a_repeated_page_token_is_a_loop_even_when_the_url_changes(loaded: Loaded) -> None:
    """Twilio's next_page_url carries Page=N and PageToken: a server repeating the token loops forever."""

    def respond(path: str) -> Answer:
        if path == f"/v1/Flows/{FLOW}":
            return Answer(200, flow(FLOW))
        if path.startswith("/v2/"):  # no definitions on this server: the flow loads without them
            return Answer(404, {"code": 20404, "status": 404})
        n = int(m[1]) if (m := re.search(r"[?&]Page=(\d+)", path)) else 0
        if not path.startswith(LIST) or n > 50:
            return Answer(400, {"code": 21481, "message": "Invalid PageToken"})
        return Answer(200, page("engagements", [engagement(FLOW, 1)], f"{{base}}{LIST}?Page={n + 1}&PageToken=PTsame"))

    with DynamicStudio(respond) as studio:
        with pytest.raises(PipelineStepFailed) as err:
            loaded.run(make_source(studio.base_url, flow_sids=[FLOW]))
        lists = [r.path for r in studio.requests if r.path.startswith(LIST)]
    assert len(lists) == 2, lists  # the first page, the page with the token; the token again is refused
    assert f"flow {FLOW}: the API returned the page token PTsame twice (a pagination loop)" in failure_text(err)


# ---------------------------------------------------------------------------- records skipped, counted, logged
BAD_RECORDS: list[tuple[Any, str]] = [
    (engagement(FLOW, 11, sid=None), "no sid"),
    (None, "not a JSON object"),
    ("FN" + "0" * 32, "not a JSON object"),
    (engagement(FLOW, 12, date_created=None, date_updated=None), "no date_created or date_updated"),
    (engagement(FLOW, 13, date_created="yesterday"), "a date that is not ISO 8601"),
    (engagement(FLOW, 14, date_updated=1772000000), "a date that is not ISO 8601"),
    (engagement(FLOW, 16, date_updated="2026-03-01T10:06:00"), "a date without a time zone"),
    (engagement(OTHER_FLOW, 15), "flow_sid differs from the flow being read"),
    (engagement(FLOW, 1, status="active"), "the same sid twice in one walk"),  # engagement 1 again, on page 2
]


def hostile_pages() -> dict[str, Answer]:
    good = [engagement(FLOW, n) for n in range(1, 7)]
    good[4]["date_updated"] = None  # Twilio's own data has these: the cursor falls back to date_created
    good[2]["context"] = json.dumps(good[2]["context"])  # context as JSON text: read like an object
    good[5]["context"] = "{not json"  # neither in the list nor on the Context endpoint: loaded without it
    second = f"{LIST}?PageSize=1000&Page=1&PageToken=PT2"
    context = f"{LIST}/{good[5]['sid']}/Context"
    return studio_routes(
        page("engagements", [good[0], *(r for r, _ in BAD_RECORDS[:4]), good[1], good[2]], "{base}" + second),
        **{
            second: Answer(200, page("engagements", [good[3], *(r for r, _ in BAD_RECORDS[4:]), *good[4:]], None)),
            context: Answer(200, {"context": "[1, 2]", "flow_sid": FLOW, "engagement_sid": good[5]["sid"]}),
        },
    )


def test_bad_records_are_skipped_counted_and_logged_and_the_rest_loads(
    loaded: Loaded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="twilio_studio")
    with DynamicStudio(routes(hostile_pages())) as studio:
        loaded.run(make_source(studio.base_url, flow_sids=[FLOW]))
    rows = loaded.sql("SELECT sid, status, date_updated IS NULL, context IS NULL FROM engagements ORDER BY sid")
    # the first copy of engagement 1; 5 without date_updated; 6 without its unusable context
    assert rows == [(f"FN{n:032x}", "ended", n == 5, n == 6) for n in range(1, 7)]
    widgets = loaded.sql("SELECT engagement_sid, name, inbound_body FROM engagements__widgets ORDER BY 1")
    assert widgets == [(f"FN{n:032x}", "ask", "yes") for n in range(1, 6)]  # 3's context came as JSON text
    expected: dict[str, int] = {}
    for _, reason in BAD_RECORDS:
        expected[reason] = expected.get(reason, 0) + 1
    skipped = {
        m[2]: int(m[1])
        for r in caplog.records
        if r.name == "twilio_studio" and r.levelno == logging.WARNING
        and (m := re.fullmatch(rf"flow {FLOW}: skipped (\d+) engagements: (.+)", r.getMessage()))
    }  # fmt: skip
    assert skipped == expected
    assert f"flow {FLOW}: loaded 1 engagements without their context: a context that is not a JSON object" in [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
    ]


def test_a_step_with_a_bad_date_is_skipped_and_logged(loaded: Loaded, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="twilio_studio")
    parent = engagement(FLOW, 1)

    def step(n: int, **overrides: Any) -> dict[str, Any]:
        return {
            "sid": f"FT{n:032x}", "account_sid": "AC" + "a" * 32, "flow_sid": FLOW, "engagement_sid": parent["sid"],
            "name": "ask", "type": "send-and-wait-for-reply", "context": {"widgets": {"ask": {"n": n}}},
            "transitioned_from": "Trigger", "transitioned_to": "ask", "parent_step_sid": None,
            "date_created": "2026-03-01T10:00:00Z", "date_updated": "2026-03-01T10:00:00Z", "url": "{base}/x",
            **overrides,
        }  # fmt: skip

    steps = page("steps", [step(1), step(2, date_created="yesterday"), step(3)], None)
    table = studio_routes(
        page("engagements", [parent], None), **{f"{LIST}/{parent['sid']}/Steps?PageSize=1000": Answer(200, steps)}
    )
    with DynamicStudio(routes(table)) as studio:
        loaded.run(
            make_source(studio.base_url, flow_sids=[FLOW]).with_resources("flows", "engagements", "engagement_steps")
        )
    assert loaded.sql("SELECT sid FROM engagement_steps ORDER BY sid") == [(f"FT{1:032x}",), (f"FT{3:032x}",)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        f"flow {FLOW}, engagement {parent['sid']} steps: skipped step FT{2:032x}: a date that is not ISO 8601"
        in warnings
    )


def test_cli_reports_bad_records_and_refusals_without_a_traceback(tmp_path: Path) -> None:
    with DynamicStudio(routes(hostile_pages())) as studio:
        args = ("run", "--pipelines-dir", str(tmp_path / "p"), "--pipeline-name", "hostile", "--flow", FLOW)
        ok = cli(*args, cwd=tmp_path, env=source_env(studio.base_url))
        assert ok.returncode == 0, ok.stderr
        assert "6 engagements written" in ok.stdout
        assert f"flow {FLOW}: skipped 2 engagements: a date that is not ISO 8601" in ok.stderr
        assert "Traceback" not in ok.stderr

    with DynamicStudio(routes({})) as foreign:
        table: dict[str, Answer] = {}
        with DynamicStudio(routes(table)) as studio:
            home, away = studio.base_url.split("//")[1], foreign.base_url.split("//")[1]
            table.update(studio_routes(page("engagements", [], f"http://{away}\\@{home}{LIST}?Page=1")))
            refused = cli(*args, cwd=tmp_path, env=source_env(studio.base_url))
        assert foreign.requests == []
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith(f"error: flow {FLOW}: the API returned a next page on")
    assert "Traceback" not in refused.stderr
