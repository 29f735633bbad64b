"""Documentation that is generated from code stays generated: README's configuration table, the architecture picture."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def _config_table():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("config_table", REPO / "scripts" / "config_table.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_readme_configuration_table_is_the_generated_one() -> None:
    config_table = _config_table()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert config_table.replace_in(readme) == readme, "run: python scripts/config_table.py --write"


def test_every_setting_is_in_the_table_with_a_description() -> None:
    table = _config_table().table()
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} needs a description (it is README's documentation)"
        assert f"PAPERBOT_{name.upper()}" in table


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_the_architecture_picture_is_rendered_from_its_source(tmp_path: Path) -> None:
    source = REPO / "docs" / "architecture.dot"
    rendered = subprocess.run(["dot", "-Tsvg", str(source)], capture_output=True, text=True, check=True).stdout
    committed = (REPO / "docs" / "architecture.svg").read_text(encoding="utf-8")
    # Graphviz writes its version in a comment: compare the drawing, not the header.
    assert _drawing(rendered) == _drawing(committed), "run: dot -Tsvg docs/architecture.dot -o docs/architecture.svg"


def _drawing(svg: str) -> str:
    return svg[svg.index("<svg"):]
