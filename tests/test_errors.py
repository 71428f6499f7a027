"""User mistakes end with the message and exit code 2; real bugs keep their traceback."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from fashion_clip.errors import ConfigError, exit_on_user_error, find_user_error


def test_user_error_is_found_through_hydra_instantiate_wrapping(tmp_path) -> None:
    spec = {"_target_": "fashion_clip.data.shard_spec.resolve_shards", "spec": str(tmp_path / "none-*.tar")}
    with pytest.raises(Exception) as err:
        instantiate(spec)
    found = find_user_error(err.value)
    assert found is not None and "none-*.tar" in str(found)


def test_entry_point_exits_2_with_the_message(capsys) -> None:
    @exit_on_user_error
    def cli() -> None:
        raise ConfigError("data.batch_size must be positive, got -1")

    with pytest.raises(SystemExit) as exit_info:
        cli()
    assert exit_info.value.code == 2
    assert "data.batch_size must be positive" in capsys.readouterr().err


def test_programming_errors_are_not_swallowed() -> None:
    @exit_on_user_error
    def cli() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        cli()
