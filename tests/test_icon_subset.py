"""The site's Font Awesome script cut to the icons it names (book/_ext/icon_subset.py), on the theme's real file."""

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pydata_sphinx_theme
import pytest

REPO = Path(__file__).resolve().parents[1]
THEME_SCRIPT = Path(pydata_sphinx_theme.__file__).parent / "theme" / "pydata_sphinx_theme" / "static" / "scripts" / \
    "fontawesome.js"
spec = importlib.util.spec_from_file_location("icon_subset", REPO / "book" / "_ext" / "icon_subset.py")
icon_subset = importlib.util.module_from_spec(spec)
spec.loader.exec_module(icon_subset)


def icon_names(source: str) -> set:
    """The names of the icon entries left in a Font Awesome script."""
    return {m.group(1) or m.group(2) for m in icon_subset.ICON_ENTRY.finditer(source)}


def test_subset_keeps_exactly_the_named_icons_and_their_aliases(tmp_path):
    """Quoted and unquoted names are both recognised; an alias ("search") keeps its icon; the rest goes."""
    source = THEME_SCRIPT.read_text(encoding="utf-8")
    assert len(icon_names(source)) > 1500  # every free icon
    text, kept, dropped = icon_subset.subset_icons(source, {"bars", "github", "circle-half-stroke", "search"})
    assert icon_names(text) == {"bars", "github", "circle-half-stroke", "magnifying-glass"}
    assert kept >= 4 and kept + dropped == len(re.findall(icon_subset.ICON_ENTRY, source))
    assert len(text) < len(source) / 10
    if shutil.which("node"):  # the trimmed script is still valid JavaScript
        (tmp_path / "fa.js").write_text(text)
        subprocess.run(["node", "--check", str(tmp_path / "fa.js")], check=True)


def test_used_names_are_read_from_pages_and_scripts(tmp_path):
    """``fa-NAME`` in any page or script counts; style classes come along but match no icon."""
    (tmp_path / "a.html").write_text('<i class="fa-solid fa-bars"></i><i class="fa-brands fa-github"></i>')
    (tmp_path / "b.js").write_text('icon.className = "fa-solid fa-sun"')
    assert icon_subset.used_icon_names(tmp_path.iterdir()) >= {"bars", "github", "sun", "solid", "brands"}


@pytest.mark.parametrize("text", ['x={"a":[1,2,[],"f","M0"]', 'x={a:[1,2,["b"],"f",["M0","M1"]]'])
def test_an_unused_icon_leaves_valid_object_syntax(text):
    """Dropping the last or only entry leaves ``{}`` or a trailing comma, both valid JavaScript."""
    out, kept, dropped = icon_subset.subset_icons(text + "}", set())
    assert (kept, dropped) == (0, 1) and out == "x={}"
