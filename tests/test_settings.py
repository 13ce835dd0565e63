from __future__ import annotations

from pathlib import Path

import pytest

from mlcycle.errors import ValidationFailed
from mlcycle.settings import CONFIG_FILE, Settings, find_project_root, load_settings


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MLCYCLE_HOME", "MLCYCLE_STORE__METADATA_URL", "MLCYCLE_ACTOR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / CONFIG_FILE).write_text('actor = "from-toml"\n[store]\nbusy_timeout_s = 7\n')
    (tmp_path / "notebooks" / "deep").mkdir(parents=True)
    return tmp_path


def test_defaults_live_inside_the_project(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.metadata_url == f"sqlite:///{tmp_path}/.mlcycle/mlcycle.db"
    assert settings.artifacts_url == f"{tmp_path}/.mlcycle/artifacts"
    assert settings.clock.mode == "real"
    assert settings.actor


def test_config_is_found_by_walking_up(project: Path) -> None:
    deep = project / "notebooks" / "deep"
    assert find_project_root(deep) == project
    settings = load_settings(deep)
    assert settings.home == project
    assert settings.actor == "from-toml"
    assert settings.store.busy_timeout_s == 7


def test_no_project_means_the_start_folder_is_home(tmp_path: Path) -> None:
    assert find_project_root(tmp_path) is None
    assert load_settings(tmp_path).home == tmp_path.resolve()


def test_environment_beats_toml_and_flags_beat_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLCYCLE_ACTOR", "from-env")
    monkeypatch.setenv("MLCYCLE_STORE__BUSY_TIMEOUT_S", "9")
    assert load_settings(project).actor == "from-env"
    assert load_settings(project).store.busy_timeout_s == 9
    assert load_settings(project, actor="from-flag").actor == "from-flag"


def test_team_settings_take_postgres_and_s3_urls(project: Path) -> None:
    (project / CONFIG_FILE).write_text(
        '[store]\nmetadata_url = "postgresql+psycopg://db.internal:5432/mlcycle"\n'
        'artifacts_url = "s3://ml-team/artifacts"\n'
        '[store.s3]\nendpoint_url = "http://127.0.0.1:9000"\nregion = "eu-west-1"\n'
    )
    settings = load_settings(project)
    assert settings.metadata_url.startswith("postgresql+psycopg://")
    assert settings.artifacts_url == "s3://ml-team/artifacts"
    assert settings.store.s3.endpoint_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    "body",
    [
        '[store.s3]\nsecret_access_key = "abc"\n',
        '[store]\nmetadata_url = "postgresql+psycopg://ana:hunter2@db:5432/ml"\n',
    ],
)
def test_credentials_are_refused_in_the_committed_file(project: Path, body: str) -> None:
    (project / CONFIG_FILE).write_text(body)
    with pytest.raises(ValidationFailed, match=r"secrets\.toml"):
        load_settings(project)


def test_credentials_come_from_the_secrets_file_or_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / ".mlcycle").mkdir()
    (project / ".mlcycle" / "secrets.toml").write_text(
        '[store.s3]\naccess_key_id = "AKIAEXAMPLE"\nsecret_access_key = "from-secrets"\n'
    )
    monkeypatch.setenv("MLCYCLE_STORE__S3__SECRET_ACCESS_KEY", "from-env")
    s3 = load_settings(project).store.s3
    assert s3.access_key_id is not None
    assert s3.access_key_id.get_secret_value() == "AKIAEXAMPLE"
    assert s3.secret_access_key is not None
    assert s3.secret_access_key.get_secret_value() == "from-env"
    assert "from-env" not in repr(s3)


def test_broken_toml_names_the_file(project: Path) -> None:
    (project / CONFIG_FILE).write_text("[store\n")
    with pytest.raises(ValidationFailed, match="is not valid TOML"):
        load_settings(project)


def test_unknown_keys_are_named(project: Path) -> None:
    (project / CONFIG_FILE).write_text("[store]\nmetadata_ulr = 'sqlite://'\n")
    with pytest.raises(ValidationFailed, match=r"store\.metadata_ulr"):
        load_settings(project)


def test_out_of_range_values_are_named(project: Path) -> None:
    (project / CONFIG_FILE).write_text("[tracking]\nflush_interval_s = 5\n")
    with pytest.raises(ValidationFailed, match=r"tracking\.flush_interval_s"):
        load_settings(project)


def test_home_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLCYCLE_HOME", str(tmp_path))
    assert load_settings().home == tmp_path


def test_data_policy_settings_come_from_toml_and_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = load_settings(project).data
    assert {"name", "first_name"} <= set(defaults.personal_names)
    assert defaults.deny_columns == ()
    assert defaults.pii_sample_rows == 100_000
    (project / CONFIG_FILE).write_text(
        '[data]\npersonal_names = ["customer"]\ndeny_columns = ["race"]\npii_sample_rows = 500\n'
    )
    settings = load_settings(project)
    assert settings.data.personal_names == ("customer",)
    assert settings.data.deny_columns == ("race",)
    assert settings.data.pii_sample_rows == 500
    monkeypatch.setenv("MLCYCLE_DATA__DENY_COLUMNS", '["race", "religion"]')
    assert load_settings(project).data.deny_columns == ("race", "religion")
    (project / CONFIG_FILE).write_text("[data]\npii_sample_rows = 0\n")
    with pytest.raises(ValidationFailed, match=r"data\.pii_sample_rows"):
        load_settings(project)
