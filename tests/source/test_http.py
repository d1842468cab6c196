"""Retries, HTTP errors and pages the source must refuse to follow."""

from __future__ import annotations

from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from tests.kit.duck import Loaded
from tests.kit.loopback import ScriptedStudio, engagement, flow, page
from tests.kit.studio import AUTH_TOKEN, DEFAULT_ENGAGEMENTS, EmulatorFactory, expected_sids, make_source
from twilio_studio.emulator import Emulator, Faults

FLOW = "FW" + "1" * 32


def failure_text(err: pytest.ExceptionInfo[BaseException]) -> str:
    """The whole chain of messages a user sees, from dlt's wrapper down to our error."""
    texts, exc = [], err.value
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts.append(str(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return "\n".join(texts)


@pytest.mark.parametrize(
    ("kind", "times", "retry_after"),
    [
        pytest.param("throttle", 3, 0, id="429_with_retry_after"),
        pytest.param("throttle", 2, None, id="429_without_retry_after"),
        pytest.param("error", 3, 0, id="500_and_503"),
        pytest.param("drop", 2, 0, id="dropped_connections"),
        pytest.param("truncate", 2, 0, id="truncated_json"),
    ],
)
def test_transient_failures_are_retried_and_every_row_loads(
    emulator_factory: EmulatorFactory, loaded: Loaded, kind: str, times: int, retry_after: int | None
) -> None:
    emu = emulator_factory(faults=Faults(retry_after=retry_after))
    emu.inject(kind, times=times, path_contains="/Engagements")
    loaded.run(make_source(emu.base_url, page_size=20))
    assert emu.pending_faults() == 0
    assert {r[0] for r in loaded.sql("SELECT sid FROM engagements")} == expected_sids(emu)
    assert loaded.scalar("SELECT count(*) FROM engagements") == DEFAULT_ENGAGEMENTS


def test_concurrency_cap_below_ours_still_loads_every_row(emulator_factory: EmulatorFactory, loaded: Loaded) -> None:
    emu = emulator_factory(flows=6, engagements=30, faults=Faults(max_concurrency=2, latency=0.02, retry_after=0))
    loaded.run(make_source(emu.base_url, page_size=5, max_concurrency=6))
    assert emu.stats.by_status[429] > 0
    assert {r[0] for r in loaded.sql("SELECT sid FROM engagements")} == expected_sids(emu)


def test_persistent_failure_names_flow_and_path_and_keeps_state(emulator: Emulator, loaded: Loaded) -> None:
    flow = emulator.dataset.flows[0].sid
    emulator.inject("error", times=50, path_contains=f"{flow}/Engagements")
    with pytest.raises(PipelineStepFailed) as err:
        loaded.run(make_source(emulator.base_url, max_attempts=2, max_concurrency=1))
    text = failure_text(err)
    assert f"flow {flow}: GET /v1/Flows/{flow}/Engagements still failed with HTTP 50" in text
    assert "after 2 attempts" in text
    assert AUTH_TOKEN not in text and "Internal Server Error" not in text
    # nothing was saved for the failed run: the next one loads everything
    emulator.clear_faults()
    loaded.run(make_source(emulator.base_url))
    assert loaded.scalar("SELECT count(*) FROM engagements") == DEFAULT_ENGAGEMENTS


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(
            {"auth_token": "wrong-token"},
            "answered HTTP 401 (Twilio error 20003): check account_sid and auth_token (or api_key_sid and "
            "api_key_secret), and that base_url is the region the credentials belong to",
            id="401_wrong_token",
        ),
        pytest.param(
            {"flow_sids": ["FW" + "0" * 32]},
            f"flow FW{'0' * 32}: GET /v1/Flows/FW{'0' * 32} answered HTTP 404 (Twilio error 20404): "
            "it does not exist in this account",
            id="404_unknown_flow",
        ),
    ],
)
def test_refused_requests_say_what_to_check(
    emulator: Emulator, loaded: Loaded, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(PipelineStepFailed) as err:
        loaded.run(make_source(emulator.base_url, **options))
    text = failure_text(err)
    assert message in text
    assert "wrong-token" not in text


def test_api_key_credentials_work(emulator: Emulator, loaded: Loaded) -> None:
    loaded.run(
        make_source(
            emulator.base_url, account_sid=None, auth_token=None,
            api_key_sid="SK" + "a" * 32, api_key_secret="emulator-api-secret",
        )
    )  # fmt: skip
    assert loaded.scalar("SELECT count(*) FROM engagements") == DEFAULT_ENGAGEMENTS


def test_next_page_on_another_host_is_refused_and_never_requested(loaded: Loaded) -> None:
    with ScriptedStudio() as foreign, ScriptedStudio() as studio:
        studio.routes[f"/v1/Flows/{FLOW}"] = (200, flow(FLOW))
        first = f"/v1/Flows/{FLOW}/Engagements?PageSize=1000"
        studio.routes[first] = (
            200,
            page("engagements", [engagement(FLOW, 1)], foreign.base_url + f"/v1/Flows/{FLOW}/Engagements?Page=1"),
        )
        with pytest.raises(PipelineStepFailed) as err:
            loaded.run(make_source(studio.base_url, flow_sids=[FLOW]))
        assert foreign.requests == []
        host = foreign.base_url.split("//")[1]
        assert (
            f"flow {FLOW}: the API returned a next page on http://{host}, which is not base_url's host; "
            "refusing to send credentials there" in failure_text(err)
        )


@pytest.mark.parametrize(
    ("pages", "message"),
    [
        pytest.param(
            {
                "?PageSize=1000": (200, page("engagements", [engagement(FLOW, 1)], "{base}/p2")),
                "/p2": (
                    200,
                    page(
                        "engagements", [engagement(FLOW, 2)], "{base}/v1/Flows/" + FLOW + "/Engagements?PageSize=1000"
                    ),
                ),
            },
            "the API returned the page /v1/Flows/" + FLOW + "/Engagements twice (a pagination loop)",
            id="repeated_page_url",
        ),
        pytest.param(
            {"?PageSize=1000": (200, {"engagements": []})},
            "returned a page without a 'engagements' list and a 'meta' object",
            id="page_without_meta",
        ),
        pytest.param(
            {"?PageSize=1000": (200, page("executions", [engagement(FLOW, 1)], None))},
            "returned a page without a 'engagements' list and a 'meta' object",
            id="wrong_list_key",
        ),
    ],
)
def test_broken_pagination_stops_with_a_clear_error(loaded: Loaded, pages: dict[str, Any], message: str) -> None:
    with ScriptedStudio() as studio:
        studio.routes[f"/v1/Flows/{FLOW}"] = (200, flow(FLOW))
        for suffix, answer in pages.items():
            path = suffix if suffix.startswith("/p") else f"/v1/Flows/{FLOW}/Engagements{suffix}"
            studio.routes[path] = answer
        with pytest.raises(PipelineStepFailed) as err:
            loaded.run(make_source(studio.base_url, flow_sids=[FLOW]))
        assert message in failure_text(err)
