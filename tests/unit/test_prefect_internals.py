"""Prefect's internals paramaudit relies on are still there, in the form the patches expect."""

from __future__ import annotations

import contextlib
import inspect
import signal

from paramaudit.app import prefect_internals


def test_the_installed_prefect_is_a_tested_release() -> None:
    assert prefect_internals.check_version()


def test_capture_sigterm_is_still_what_the_flow_engine_enters() -> None:
    from prefect import flow_engine

    assert callable(flow_engine.capture_sigterm)
    # the engine enters it by its module-level name, so replacing that name holds it back
    assert "capture_sigterm()" in inspect.getsource(flow_engine)


def test_sigterm_is_left_alone_during_the_hold_and_restored_after() -> None:
    from prefect import flow_engine

    original = flow_engine.capture_sigterm
    before = signal.getsignal(signal.SIGTERM)
    with prefect_internals.sigterm_left_to_caller() as held:
        assert held
        with flow_engine.capture_sigterm():
            assert signal.getsignal(signal.SIGTERM) is before
    assert flow_engine.capture_sigterm is original
    assert flow_engine.capture_sigterm is not contextlib.nullcontext


def test_an_untested_release_is_not_patched(monkeypatch) -> None:
    from prefect import flow_engine

    monkeypatch.setattr(prefect_internals, "_release", lambda: "9.0.0")
    monkeypatch.setattr(prefect_internals, "_warned", [True])  # no warning in the test output
    with prefect_internals.sigterm_left_to_caller() as held:
        assert not held
        assert flow_engine.capture_sigterm is not contextlib.nullcontext


def test_the_server_app_factory_takes_ephemeral_and_final() -> None:
    from prefect.server.api.server import create_app

    params = inspect.signature(create_app).parameters
    assert {"ephemeral", "final"} <= set(params)
    build = prefect_internals.ephemeral_app_factory()
    assert build.func is create_app and build.keywords == {"ephemeral": True, "final": True}
