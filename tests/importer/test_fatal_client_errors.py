"""An error neptune-scale treats as fatal for the run or the project (its StatusTrackingThread stops syncing on
NeptuneRunError and NeptuneProjectError) stops nmig's direct series sending of that run too: nothing more of
the run reaches the service, and the error is kept for the report."""

from __future__ import annotations

from pathlib import Path

from nmig.emulators.http import EmulatorInfo


def test_a_run_error_stops_the_direct_sending_of_the_run(neptune3: EmulatorInfo, tmp_path: Path, nq: object) -> None:
    import neptune_query
    from neptune_query import runs as nq_runs
    from neptune_scale.exceptions import NeptuneRunError
    from neptune_scale.projects import create_project
    from neptune_scale.sync.sync_process import StatusTrackingThread

    from nmig.importer import client as nclient

    project = "demo/fatal"
    create_project(project, api_token=neptune3.api_token)
    pool = nclient.ClientPool(neptune3.api_token)
    sink = nclient.RunSink(project=project, api_token=neptune3.api_token, run_id="real", experiment_name=None,
                           creation_time=None, log_directory=tmp_path / "log", clients=pool)
    try:
        sink.log_configs({"c": 1})
        sink.start_sync()
        assert sink.wait_for_processing(60, files_too=False)
        direct = nclient.DirectSeriesSender(sink, project)

        ghost = nclient.new_request(project, "no-such-run")  # RUN_NOT_FOUND: NeptuneRunNotFound, a NeptuneRunError
        nclient.append_points(ghost, "m/x", [1_000_000], [1.0], [1_700_000_000_000], "float64")
        direct.send(ghost, ("m/x",))
        assert direct.wait(60)
        assert direct.fatal is not None and direct.fatal.error_type == "NeptuneRunNotFound"
        assert StatusTrackingThread._is_fatal_error(NeptuneRunError())  # the client's own predicate

        after = nclient.new_request(project, "real")
        nclient.append_points(after, "m/y", [1_000_000, 2_000_000], [1.0, 2.0], [1_700_000_000_000] * 2, "float64")
        direct.send(after, ("m/y",))
        assert direct.wait(60)
        assert direct.points_not_sent == 2
        assert [e.error_type for _, e in direct.errors] == ["NeptuneRunNotFound"]
    finally:
        sink.close()
        pool.close()
    neptune_query.set_api_token(neptune3.api_token)
    assert nq_runs.list_attributes(project=project, runs=["real"], attributes="^m/") == []
