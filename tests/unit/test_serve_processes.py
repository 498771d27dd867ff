"""``serve --processes N``: the setting, what several processes cannot honour, and the
configuration the supervisor hands each serving process."""

from __future__ import annotations

import pickle

import pytest

from meshup.config import Settings, from_environment
from meshup.serving import ServeConfig, for_processes


def test_one_process_by_default() -> None:
    assert Settings().processes == 1
    assert from_environment({}).processes == 1


def test_from_the_environment_and_flags() -> None:
    assert from_environment({"MESHUP_PROCESSES": "3"}).processes == 3
    assert from_environment({"MESHUP_PROCESSES": "3"}).with_overrides(processes=2).processes == 2


@pytest.mark.parametrize("value", ["0", "-2"])
def test_fewer_than_one_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="MESHUP_PROCESSES must be 1 or more"):
        from_environment({"MESHUP_PROCESSES": value})


def test_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError, match="MESHUP_PROCESSES"):
        from_environment({"MESHUP_PROCESSES": "two"})


def test_one_process_keeps_every_setting() -> None:
    settings = Settings(control_api="on", clock="manual")
    assert for_processes(settings) is settings


def test_several_processes_serve_no_control_api_unless_asked() -> None:
    assert for_processes(Settings(processes=2)).control_api == "off"
    assert for_processes(Settings(processes=2, control_api="off")).control_api == "off"


def test_several_processes_refuse_the_control_api_and_a_manual_clock() -> None:
    with pytest.raises(ValueError, match="control API needs a single process"):
        for_processes(Settings(processes=2, control_api="on"))
    with pytest.raises(ValueError, match="manual clock"):
        for_processes(Settings(processes=2, clock="manual"))


def test_the_configuration_crosses_into_a_spawned_process() -> None:
    """The supervisor pickles it for each process it starts; the application is built there."""
    settings = Settings(processes=2, port=18080, master_key="k" * 40, max_headers=7)
    copy = pickle.loads(pickle.dumps(ServeConfig(settings)))
    assert isinstance(copy, ServeConfig)
    assert copy.settings == settings
    assert (copy.port, copy.workers, copy.loaded) == (18080, 2, False)
