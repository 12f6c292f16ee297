"""The design page in the repository stays true to the code: every engine path and every file it names exist, and
the README links it (the project's users have no other copy of the design)."""
from __future__ import annotations

import re
from pathlib import Path

from components.engine.execution import known_paths

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"


def test_the_design_page_names_every_engine_path():
    text = DESIGN.read_text()
    table = {m.group(1) for m in re.finditer(r"^\| `(\w+)` \|", text, re.M)}
    assert set(known_paths()) - {"auto"} <= table


def test_every_file_the_design_page_names_exists():
    text = DESIGN.read_text()
    named = set(re.findall(r"`((?:[\w./]+/)?[\w]+\.py)`", text)) | set(re.findall(r"\(`([\w/]+\.py)`", text))
    assert named
    for name in named:
        hits = [p for p in ROOT.glob(f"**/{name}") if ".venv" not in p.parts]
        assert hits, f"docs/design.md names {name}, which is not in the repository"


def test_the_readme_links_the_design_page_and_nothing_outside_the_repository():
    readme = (ROOT / "README.md").read_text()
    assert "](docs/design.md)" in readme
    for page in (readme, DESIGN.read_text()):
        assert "DESIGN.md" not in page and "../shared" not in page
