"""Sphinx extension: the theme's Font Awesome script keeps only the icons the site uses.

pydata-sphinx-theme ships every free Font Awesome icon (about 1.5 MB of JavaScript, loaded by every page)
and draws the dozen the site shows. After the build this rewrites ``_static/scripts/fontawesome.js`` to
the icons named (``fa-NAME``, by name or alias) in a built page or in the theme's scripts, and drops its
source map, which no longer matches.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterable, Optional, Set, Tuple

from sphinx.application import Sphinx
from sphinx.util import logging

LOG = logging.getLogger(__name__)
# an icon in a pack object: "name":[width,height,[aliases...],unicode,path] (the minifier leaves a name that is
# an identifier or a number unquoted: bars:[...], 0:[...])
ICON_ENTRY = re.compile(r'(?<=[{,])(?:"([a-z0-9-]+)"|([a-z0-9]+)):\[\d+,\d+,\[')
USED_NAME = re.compile(r"\bfa-([a-z0-9-]+)")


def _array_end(source: str, start: int) -> int:
    """Index of the ``]`` closing the array that opens at ``source[start]`` (strings skipped)."""
    depth, index, quote = 0, start, None
    while index < len(source):
        char = source[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    raise ValueError(f"unclosed array at {start}")


def subset_icons(source: str, used: Set[str]) -> Tuple[str, int, int]:
    """``source`` without the icon entries whose name and aliases are all unused; (text, kept, dropped)."""
    pieces, position, kept, dropped = [], 0, 0, 0
    for match in ICON_ENTRY.finditer(source):
        if match.start() < position:  # inside an entry already handled
            continue
        name = match.group(1) or match.group(2)
        end = _array_end(source, source.index("[", match.start() + len(name)))
        aliases_open = match.end() - 1
        aliases = set(re.findall(r'"([a-z0-9-]+)"', source[aliases_open:_array_end(source, aliases_open) + 1]))
        if name in used or aliases & used:
            kept += 1
            continue
        dropped += 1
        pieces.append(source[position:match.start()])
        position = end + 1 + (source[end + 1:end + 2] == ",")  # the entry and its comma
    pieces.append(source[position:])
    return "".join(pieces), kept, dropped


def used_icon_names(files: Iterable[Path]) -> Set[str]:
    """Every ``fa-NAME`` written in ``files``."""
    names: Set[str] = set()
    for path in files:
        names |= set(USED_NAME.findall(path.read_text(encoding="utf-8", errors="replace")))
    return names


def theme_script(app: Sphinx, name: str) -> Optional[Path]:
    """The theme's own ``static/scripts/NAME`` (the theme's or a parent theme's), if any."""
    for directory in app.builder.theme.get_theme_dirs():
        candidate = Path(directory) / "static" / "scripts" / name
        if candidate.is_file():
            return candidate
    return None


def subset_after_build(app: Sphinx, exception: Optional[Exception]) -> None:
    """Rewrite the built site's fontawesome.js to the icons its pages and scripts name."""
    script = Path(app.outdir) / "_static" / "scripts" / "fontawesome.js"
    if exception is not None or app.builder.format != "html" or not script.is_file():
        return
    outdir = Path(app.outdir)
    sources = [p for p in outdir.rglob("*.html")] + [p for p in outdir.glob("_static/**/*.js") if p != script]
    # from the theme's own copy: an incremental build leaves the copy trimmed by the last build in place
    original = theme_script(app, script.name) or script
    text, kept, dropped = subset_icons(original.read_text(encoding="utf-8"), used_icon_names(sources))
    text = re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", text)
    script.write_text(text, encoding="utf-8")
    script.with_name(script.name + ".map").unlink(missing_ok=True)
    LOG.info(f"fontawesome.js: kept {kept} icons the site names, dropped {dropped}")


def setup(app: Sphinx) -> Dict[str, object]:
    """Connect the subsetting to the end of the build."""
    app.connect("build-finished", subset_after_build)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
