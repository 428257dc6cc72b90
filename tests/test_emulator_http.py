import json
import urllib.error
import urllib.request

import pytest

from nmig.emulators.http import FaultPlan, Request, Response, Router, serve_in_thread


def _router() -> Router:
    router = Router()

    @router.route("GET", r"/echo/(?P<name>[^/]+)")
    def echo(request: Request, match) -> Response:
        return Response.json({"name": match["name"], "q": request.arg("q")})

    return router


def test_routes_and_unknown_paths() -> None:
    with serve_in_thread(_router(), FaultPlan()) as url:
        with urllib.request.urlopen(f"{url}/echo/abc?q=1") as resp:
            assert json.load(resp) == {"name": "abc", "q": "1"}
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}/nope")
        assert err.value.code == 404


def test_faults_are_deterministic_under_a_seed() -> None:
    def codes(seed: int) -> list[int]:
        plan = FaultPlan(fail_rate=0.3, throttle_rate=0.2, seed=seed)
        return [(r.status if (r := plan.decide("/x")) else 200) for _ in range(200)]

    first = codes(7)
    assert first == codes(7)
    assert first != codes(8)
    assert 40 < sum(c in (500, 503) for c in first) < 80
    assert 20 < first.count(429) < 60


def test_refuses_non_loopback_bind() -> None:
    with pytest.raises(ValueError):
        with serve_in_thread(_router(), FaultPlan(), host="0.0.0.0"):
            pass
