"""The course website: built with warnings as errors, free of hidden tests, and working offline in Chromium.

The session fixture builds the site (`jupyter-book build . -W -n --keep-going`, cached: seconds when
nothing changed); set SITE_SKIP_BUILD=1 to check an existing _build/html instead. Pages are served on
127.0.0.1 and opened in headless Chromium with every other host unreachable, so MathJax and images
must come from the site itself. Every figure a page's code draws must reach the reader as an image:
the number of images in each page's cell outputs equals the number of figure outputs the build executed
for it (read back from the build's jupyter-cache). Screenshots of two pages are saved in artifacts/.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag

import nbformat
import pytest
import torch
import yaml

from grading.course import colab_setup_source, colab_url
from tests.site_helpers import (
    SiteServer,
    axe_violations,
    chromium,
    executed_page,
    figure_output_count,
    hidden_test_lines,
    toc_docnames,
)

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "_build" / "html"
ARTIFACTS = REPO / "artifacts"
SCREENSHOT_PAGES = {"book/numerical_stability": "site_numerical_stability.png",
                    "solutions/initialization/initialization": "site_initialization.png"}
NBGRADER_MARKERS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
pytestmark = pytest.mark.slow  # the book build (minutes) and a browser
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
PAGES = toc_docnames(REPO / "_toc.yml")


@pytest.fixture(scope="session")
def site() -> Path:
    """The built site: built here (incrementally) unless SITE_SKIP_BUILD=1."""
    if os.environ.get("SITE_SKIP_BUILD") != "1":
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(REPO))
        jupyter_book = Path(sys.executable).parent / "jupyter-book"
        proc = subprocess.run([str(jupyter_book), "build", ".", "-W", "-n", "--keep-going"], cwd=REPO,
                              env=env, capture_output=True, text=True)
        assert proc.returncode == 0, "the book build failed:\n" + (proc.stdout + proc.stderr)[-6000:]
    assert (HTML / "index.html").is_file(), "no built site in _build/html"
    return HTML


@pytest.fixture(scope="session")
def server(site: Path):
    """An HTTP server for the site on 127.0.0.1 that records the paths it could not serve."""
    with SiteServer(site) as srv:
        yield srv


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless Chromium through /usr/bin/chromedriver, with every host but 127.0.0.1 unreachable."""
    driver = chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield driver
    driver.quit()


def test_every_toc_page_is_built(site: Path) -> None:
    """Each file of the table of contents became an HTML page."""
    missing = [doc for doc in PAGES if not (site / f"{doc}.html").is_file()]
    assert not missing, f"pages of _toc.yml not built: {missing}"


def test_no_hidden_test_text_anywhere_in_the_site(site: Path) -> None:
    """No built file holds an nbgrader marker or a line of a hidden test, and no notebook source is published."""
    sources = sorted((REPO / "solutions").glob("*/*.ipynb"))
    assert sources, "no solution notebooks in solutions/"
    hidden = hidden_test_lines(sources, others=[REPO / "book"])
    assert hidden, "the solution notebooks have no hidden-test lines to look for"
    published_notebooks = [p.relative_to(site) for p in site.rglob("*.ipynb")]
    assert not published_notebooks, f"notebook sources are downloadable from the site: {published_notebooks}"
    assert not (site / "_sources").exists(), "Sphinx copied the page sources into _build/html/_sources"
    leaks = []
    for path in (p for p in site.rglob("*") if p.is_file()):
        text = path.read_bytes().decode("utf-8", errors="ignore")
        # HTML escapes quotes and angle brackets; compare against the unescaped text too
        unescaped = text.replace("&quot;", '"').replace("&#39;", "'").replace("&lt;", "<").replace(
            "&gt;", ">").replace("&amp;", "&")
        for needle in list(NBGRADER_MARKERS) + sorted(hidden):
            if needle in text or needle in unescaped:
                leaks.append(f"{path.relative_to(site)}: {needle!r}")
    assert not leaks, "hidden-test text in the built site:\n" + "\n".join(leaks[:20])


def test_no_page_shows_a_path_of_the_build_machine(site: Path) -> None:
    """No built page prints where the repository or the Python environment lie on the machine that built it
    (a loading line says course_lib/trained/..., not the absolute path)."""
    roots = {str(REPO), str(REPO.resolve()), sys.prefix} - {"/", ""}
    shown = [(str(page.relative_to(site)), root) for page in sorted(site.rglob("*.html")) for root in roots
             if root in page.read_text(errors="replace")]
    assert not shown, shown


@pytest.fixture(scope="session")
def unpublished_site(site: Path, tmp_path_factory) -> Path:
    """The site built with COURSE_SOLUTIONS=unpublished, reusing the published build's executed pages."""
    out = tmp_path_factory.mktemp("unpublished")
    shutil.copytree(REPO / "_build" / ".jupyter_cache", out / "_build" / ".jupyter_cache")
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=str(REPO), COURSE_SOLUTIONS="unpublished")
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    proc = subprocess.run([str(jupyter_book), "build", ".", "-W", "-n", "--keep-going", "--path-output", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, "the unpublished build failed:\n" + (proc.stdout + proc.stderr)[-6000:]
    return out / "_build" / "html"


def test_solutions_are_published_only_when_the_setting_says_so(site: Path, unpublished_site: Path) -> None:
    """Published (the default): the solved assignments are pages, no waiting page. Unpublished: no page or link
    under solutions/, the navigation opens with the exercises and the waiting page, and the intro's links to a
    solution lead to that page."""
    solved = [d for d in PAGES if d.startswith("solutions/")]
    assert solved and all((site / f"{d}.html").is_file() for d in solved)
    assert not (site / "book" / "solutions_later.html").exists()
    pages = sorted(unpublished_site.rglob("*.html"))
    assert not list((unpublished_site / "solutions").glob("**/*.html"))
    assert not [p for p in pages if re.search(r'href="[^"]*solutions/', p.read_text())]
    intro = (unpublished_site / "book" / "intro.html").read_text()
    captions = re.findall(r'caption-text">([^<]*)', intro)
    assert captions[0] == "The assignments", captions
    nav = intro[intro.index('caption-text">The assignments'):]
    assert nav.index("exercises.html") < nav.index("solutions_later.html") < nav.index('caption-text">Background')
    assert intro.count('href="solutions_later.html"') >= 4  # the navigation and the three solutions
    later = (unpublished_site / "book" / "solutions_later.html").read_text()
    assert "after the deadline" in later and 'href="exercises.html"' in later


def test_no_page_scrolls_sideways_on_a_phone(site: Path, server: SiteServer, browser) -> None:
    """At 390 px wide, no page is wider than the screen (long inline code wraps), and every display equation
    wider than the screen scrolls inside its own box."""
    wide = {}
    browser.set_window_size(390, 900)
    browser.set_script_timeout(60)
    try:
        for doc in PAGES:
            browser.get(f"{server.url}/{doc}.html")
            found = browser.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "const check = () => done({page: document.documentElement.scrollWidth - "
                "document.documentElement.clientWidth, math: Array.from(document.querySelectorAll("
                "'mjx-container[display=\"true\"]')).filter(m => m.scrollWidth > m.clientWidth + 1 && "
                "!['auto', 'scroll'].includes(getComputedStyle(m).overflowX)).length});"
                "if (window.MathJax && MathJax.startup) MathJax.startup.promise.then(check); else check();")
            if found["page"] > 0 or found["math"]:
                wide[doc] = found
    finally:
        browser.set_window_size(1280, 1000)
    assert not wide, wide


def test_axe_finds_nothing_serious_on_any_page(site: Path, server: SiteServer, browser) -> None:
    """axe-core, run in Chromium on every page (the theme's header, sidebar and buttons included), reports no
    serious or critical violation."""
    found = {}
    for doc in PAGES:
        browser.get(f"{server.url}/{doc}.html")
        violations = axe_violations(browser)
        if violations:
            found[doc] = violations
    assert not found, found


def test_no_page_has_a_second_search_bar_above_it(site: Path) -> None:
    """The theme's top header bar is empty on every page (it held a second search box; the sidebar has one)."""
    bars = {str(p.relative_to(site)): re.search(r'<header id="pst-header"[^>]*>(.*?)</header>', p.read_text(), re.S)
            for p in sorted(site.rglob("*.html")) if 'id="pst-header"' in p.read_text()}
    assert bars and not {page: m.group(1).strip()[:80] for page, m in bars.items() if m and m.group(1).strip()}
    assert all("search-button-field" in (site / f"{d}.html").read_text() for d in PAGES)  # the sidebar's search


def test_every_image_has_alt_text_that_says_what_it_shows(site: Path) -> None:
    """Every image of a page's content has alt text in words (not a file name); a figure a cell drew is
    described by its titles, axes and legends, or, where the page captions it, by alt text written for it."""
    wrong, captioned_count = [], 0
    for doc in PAGES:
        page = (site / f"{doc}.html").read_text()
        article = page[page.index('<article class="bd-article">'):page.index("</article>")]  # not the buttons
        captioned = {tag for block in re.findall(r"<figure\b.*?</figure>", article, flags=re.S)
                     if "<figcaption>" in block for tag in re.findall(r"<img [^>]*>", block)}
        captioned_count += len(captioned)
        for tag in re.findall(r"<img [^>]*>", article):
            alt = html_lib.unescape((re.search(r'alt="([^"]*)"', tag) or [None, ""])[1])
            figure = re.search(r"/_images/[0-9a-f]{64}\.png", tag)  # an output of a cell (named by its hash)
            described = "Figure of" in alt or (tag in captioned and len(alt.split()) >= 15)
            if len(alt) < 15 or re.search(r"\.(png|svg|jpe?g)$", alt) or (figure and not described):
                wrong.append(f"{doc}: {alt[:60]!r} {tag[:100]}")
    assert not wrong, wrong[:10]
    assert captioned_count >= 12, "the Going deeper pages' figures have captions and their own alt text"


BACKGROUND_PAGES = ("book/numerical_stability", "book/activations", "book/depth", "book/training_practice")


@pytest.mark.parametrize("doc", BACKGROUND_PAGES)
def test_background_pages_end_with_exercises_one_checkable_by_a_cell(doc: str) -> None:
    """Each background page ends with an Exercises section of 3 to 5 numbered exercises, followed by at least
    one folded cell that checks an answer."""
    text = (REPO / f"{doc}.md").read_text()
    sections = re.split(r"(?m)^## ", text)
    assert sections[-1].startswith("Exercises\n"), f"{doc}: the last section is not Exercises"
    exercises = re.findall(r"(?m)^(\d)\. ", sections[-1])
    assert 3 <= len(exercises) <= 5 and exercises == [str(i + 1) for i in range(len(exercises))], exercises
    cells = re.findall(r"```\{code-cell\} ipython3\n:tags: \[hide-cell\]\n\n# Exercise (\d)", sections[-1])
    assert cells and set(cells) <= set(exercises), cells


def test_mathjax_bundle_is_the_recorded_one() -> None:
    """The committed MathJax files match book/_static/mathjax/SHA256SUMS, and the config points at them."""
    folder = REPO / "book" / "_static" / "mathjax"
    entries = [line.split(maxsplit=1) for line in (folder / "SHA256SUMS").read_text().splitlines() if line]
    assert len(entries) > 20, "SHA256SUMS should list the script and its fonts"
    for digest, name in entries:
        actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert actual == digest, f"{name}: sha256 {actual}, recorded {digest}"
    mathjax_path = CONFIG["sphinx"]["config"]["mathjax_path"]
    assert not mathjax_path.startswith(("http:", "https:", "//")), "MathJax must not come from a CDN"
    assert (folder.parent / mathjax_path).is_file()
    assert not (REPO / "_static").exists(), (
        "a top-level _static makes Jupyter Book add every .js in the static paths to every page")


@pytest.mark.parametrize("doc", PAGES)
def test_page_references_no_remote_script_or_style(site: Path, doc: str) -> None:
    """Every script and stylesheet of a page is served by the site itself."""
    html = (site / f"{doc}.html").read_text()
    remote = re.findall(r'<script[^>]+src="((?:https?:)?//[^"]+)"', html)
    remote += re.findall(r'<link[^>]+rel="(?:stylesheet|preload|modulepreload)"[^>]+href="((?:https?:)?//[^"]+)"', html)
    remote += re.findall(r'<link[^>]+href="((?:https?:)?//[^"]+)"[^>]+rel="(?:stylesheet|preload)"', html)
    assert not remote, f"{doc} loads from the network: {remote}"
    has_math = 'class="math' in html
    assert html.count("mathjax/tex-chtml") == (1 if has_math else 0), "MathJax should load once where there is math"


@pytest.mark.parametrize("doc", PAGES)
def test_page_in_chromium(site: Path, server: SiteServer, browser, doc: str) -> None:
    """The page loads offline: MathJax typesets its math, every image loads, every internal link resolves."""
    url = f"{server.url}/{doc}.html"
    server.failures.clear()
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.find_elements("css selector", "main h1"), f"{doc}: no title"

    # MathJax: wait for its typesetting, then no raw TeX delimiters left outside code
    math_sources = browser.execute_script("return document.querySelectorAll('.math').length")
    has_mathjax = browser.execute_script("return typeof window.MathJax === 'object'")
    if math_sources:
        assert has_mathjax, f"{doc}: has math but MathJax did not load"
        browser.set_script_timeout(60)
        browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "MathJax.startup.promise.then(() => done(true)).catch(e => done(String(e)));")
        rendered = browser.execute_script("return document.querySelectorAll('mjx-container').length")
        assert rendered >= math_sources, f"{doc}: {rendered} rendered equations for {math_sources} math elements"
        errors = browser.execute_script("return document.querySelectorAll('mjx-merror').length")
        assert errors == 0, f"{doc}: {errors} MathJax errors"
    prose = browser.execute_script(
        "const c = document.querySelector('main').cloneNode(true);"
        "c.querySelectorAll('pre, code, script, style, mjx-container, .highlight').forEach(e => e.remove());"
        "return c.innerText;")
    for raw in ("$$", "\\(", "\\[", "\\begin{"):
        assert raw not in prose, f"{doc}: raw TeX {raw!r} left in the page"

    # Figures: every figure output of the executed page is an image in a cell output
    figures = figure_output_count(executed_page(REPO, doc))
    shown = browser.execute_script("return document.querySelectorAll('.cell_output img').length")
    assert shown == figures, f"{doc}: {shown} images in cell outputs for {figures} figures drawn by its cells"

    # Images: scroll to each so lazy ones load, then all must have pixels
    broken = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const imgs = Array.from(document.images);"
        "imgs.forEach(i => { i.loading = 'eager'; i.scrollIntoView(); });"
        "Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = r; i.onerror = r; })))"
        ".then(() => done(imgs.filter(i => !(i.naturalWidth > 0)).map(i => i.src)));")
    assert not broken, f"{doc}: images that did not load: {broken}"

    # Internal links: every target within the site answers 200, and its #fragment exists
    hrefs = browser.execute_script("return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    internal = sorted({h for h in hrefs if h.startswith(server.url)})
    assert internal, f"{doc}: no internal links (navigation missing?)"
    bad = []
    for href in internal:
        target, fragment = urldefrag(href)
        try:
            with urllib.request.urlopen(target, timeout=10) as response:
                body = response.read().decode("utf-8", errors="ignore")
                status = response.status
        except urllib.error.HTTPError as exc:
            bad.append(f"{href} -> HTTP {exc.code}")
            continue
        if status != 200:
            bad.append(f"{href} -> HTTP {status}")
        elif fragment and f'id="{fragment}"' not in body:
            bad.append(f"{href} -> no element with id {fragment!r}")
    assert not bad, f"{doc}: broken internal links:\n" + "\n".join(bad)

    # Icons: Font Awesome (cut to the site's icons, book/_ext/icon_subset.py) drew every one the page names
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1]; const start = Date.now();"
        "(function wait() { if (!document.querySelector('i[class*=\"fa-\"]') || Date.now() - start > 5000) done();"
        " else setTimeout(wait, 100); })();")
    undrawn = browser.execute_script(
        "return Array.from(document.querySelectorAll('i[class*=\"fa-\"]')).map(i => i.className)")
    assert not undrawn, f"{doc}: icons the trimmed Font Awesome script did not draw: {undrawn}"
    record_page_weight(doc, browser)

    # Nothing the page asked for was missing (scripts, fonts, images), and no script error
    missing = list(server.failures)
    assert not missing, f"{doc}: requests the site could not serve: {missing}"
    severe = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, f"{doc}: browser errors: {severe}"

    if doc in SCREENSHOT_PAGES:
        ARTIFACTS.mkdir(exist_ok=True)
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(ARTIFACTS / SCREENSHOT_PAGES[doc]))


PAGE_WEIGHT = ARTIFACTS / "page_weight.json"
PAGE_WEIGHT_LIMIT_MB = 4.5  # a page with its images, scripts, styles, fonts: 1.2-4.0 MB (3.9-4.8 before the icon cut)


def record_page_weight(doc: str, browser) -> None:
    """Add what the loaded page transferred (bytes per resource) to artifacts/page_weight.json; check the limit."""
    loaded = browser.execute_script(
        "const page = performance.getEntriesByType('navigation')[0];"
        "return [[location.pathname, page.encodedBodySize]].concat(performance.getEntriesByType('resource')"
        ".map(r => [new URL(r.name).pathname, r.encodedBodySize]));")
    total = sum(size for _, size in loaded)
    largest = sorted(loaded, key=lambda item: -item[1])[:5]
    ARTIFACTS.mkdir(exist_ok=True)
    report = json.loads(PAGE_WEIGHT.read_text()) if PAGE_WEIGHT.is_file() else {}
    report[doc] = {"total_mb": round(total / 1e6, 3), "resources": len(loaded),
                   "largest": [{"path": path, "kb": round(size / 1e3, 1)} for path, size in largest]}
    PAGE_WEIGHT.write_text(json.dumps(report, indent=1, sort_keys=True))
    print(f"{doc}: {total / 1e6:.2f} MB in {len(loaded)} requests; largest "
          + ", ".join(f"{Path(path).name} {size / 1e3:.0f} kB" for path, size in largest[:3]))
    assert total < PAGE_WEIGHT_LIMIT_MB * 1e6, f"{doc} weighs {total / 1e6:.2f} MB: {largest}"


def test_font_awesome_script_holds_only_the_site_icons(site: Path) -> None:
    """The theme's 1.5 MB icon script is cut to the icons the site names, and no stale source map is left."""
    script = site / "_static" / "scripts" / "fontawesome.js"
    assert script.stat().st_size < 150_000, f"fontawesome.js is {script.stat().st_size} bytes"
    assert not script.with_name("fontawesome.js.map").exists()


FIGURE_REPR = re.compile(r"(?:<|&lt;)\w*Figure size \d+x\d+ with \d+ Axes(?:>|&gt;)")


def test_no_figure_is_shown_as_text(site: Path) -> None:
    """No page shows a figure's repr ("<Figure size 1500x250 with 5 Axes>") where its image should be."""
    shown_as_text = [f"{page.relative_to(site)}: {match}" for page in sorted(site.rglob("*.html"))
                     for match in FIGURE_REPR.findall(page.read_text(errors="ignore"))]
    assert not shown_as_text, "figures shown as text:\n" + "\n".join(shown_as_text[:20])


def test_every_executed_page_drew_figures_as_images(site: Path) -> None:
    """Each page that draws figures has them as image/png outputs in the notebook myst-nb executed."""
    executed = [executed_page(REPO, doc) for doc in PAGES]
    total = sum(figure_output_count(notebook, require_png=True) for notebook in executed)
    assert total == sum(figure_output_count(notebook) for notebook in executed) and total >= 25, total


def expected_colab_url(notebook: str) -> str:
    """The Colab URL of a repository notebook: grading.course.colab_url, the course's one definition."""
    return colab_url(notebook)


def test_exercise_badges_open_each_student_notebook_in_colab(site: Path, server: SiteServer, browser) -> None:
    """The exercises page has one working Colab badge per student notebook, pointing at its path."""
    notebooks = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "book" / "exercises").glob("*/*.ipynb"))
    assert notebooks, "no student notebooks in book/exercises/"
    browser.get(f"{server.url}/book/exercises.html")
    badges = browser.execute_script(
        "return Array.from(document.querySelectorAll('a.colab-badge')).map(a => "
        "({href: a.href, loaded: a.querySelector('img').naturalWidth > 0}))")
    assert sorted(b["href"] for b in badges) == sorted(expected_colab_url(nb) for nb in notebooks)
    assert all(b["loaded"] for b in badges), "a badge image did not load"


@pytest.mark.parametrize("doc", [d for d in PAGES if (REPO / f"{d}.ipynb").is_file()])
def test_notebook_pages_have_a_colab_launch_button(site: Path, doc: str) -> None:
    """A notebook page's Colab launch button opens that notebook of the configured repository; a solved
    assignment's opens its student notebook (the nbgrader source holds hidden tests)."""
    html = (site / f"{doc}.html").read_text()
    name = Path(doc).name
    notebook = f"book/exercises/{name}/{name}.ipynb" if doc.startswith("solutions/") else f"{doc}.ipynb"
    assert expected_colab_url(notebook) in html, f"{doc}: no Colab button for {notebook}"


def test_every_colab_link_opens_a_notebook_students_may_see(site: Path) -> None:
    """Every Colab link of the site (launch buttons, badges) names a notebook of this repository, outside
    solutions/; the MyST pages (.md) have no launch button, as Colab cannot open them."""
    prefix = expected_colab_url("NOTEBOOK").split("NOTEBOOK")[0]
    links = {(str(page.relative_to(site)), html_lib.unescape(url)) for page in sorted(site.rglob("*.html"))
             for url in re.findall(r'href="(https://colab\.research\.google\.com/[^"]*)"', page.read_text())}
    assert links
    wrong = [(page, url) for page, url in links if not url.startswith(prefix)
             or not url[len(prefix):].endswith(".ipynb") or not (REPO / url[len(prefix):]).is_file()
             or url[len(prefix):].startswith("solutions/")]
    assert not wrong, wrong
    md_pages = [d for d in PAGES if (REPO / f"{d}.md").is_file()]
    with_button = [d for d in md_pages if "launch-buttons" in (site / f"{d}.html").read_text()]
    assert md_pages and not with_button, with_button


def test_explorer_notebook_installs_from_the_configured_repository() -> None:
    """The explorer's Colab set-up cell installs course_lib from repository.url at repository.branch."""
    nb = nbformat.read(REPO / "book" / "explorer.ipynb", as_version=4)
    setup = [c for c in nb.cells if "colab-setup" in c.metadata.get("tags", [])]
    assert len(setup) == 1
    repository = CONFIG["repository"]
    assert f"git+{repository['url']}@{repository['branch']}" in setup[0].source
    assert setup[0].source == colab_setup_source(), "the explorer's set-up cell is the course's one Colab set-up"
    live = [c for c in nb.cells if "launch_explorer()" in c.source]
    assert live and all("skip-execution" in c.metadata.get("tags", []) for c in live), (
        "the widget cell must not run at build time (its widgets would need scripts from a CDN)")


def test_explorer_momentum_is_the_course_moving_average() -> None:
    """The explorer's momentum optimizer follows m = beta m + (1 - beta) g, w = w - lr m, step by step."""
    from course_lib.explorer import optimizer_factories

    lr, beta = 0.3, 0.8
    weights = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    factories = optimizer_factories({"SGD": lr, "SGD momentum": lr, "Adam": lr}, beta, 0.9, 0.999)
    optimizer = factories["SGD momentum"]([weights])
    expected, m = weights.detach().clone(), torch.zeros(2)
    for step in range(25):
        grad = torch.tensor([math.sin(step), math.cos(3 * step)])
        weights.grad = grad.clone()
        optimizer.step()
        m = beta * m + (1 - beta) * grad
        expected = expected - lr * m
        assert torch.allclose(weights.detach(), expected, atol=1e-6), f"step {step}"


def test_explorer_figure_draws_three_paths_on_both_surfaces() -> None:
    """explorer_figure draws SGD, momentum and Adam on the two surfaces for the given number of steps."""
    from course_lib.explorer import SURFACES, Settings, explorer_figure

    fig = explorer_figure(Settings(steps=20))
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().splitlines()[0] for ax in axes] == [s.title for s in SURFACES.values()]
    for ax in axes:
        paths = [line for line in ax.get_lines() if line.get_label() in ("SGD", "SGD momentum", "Adam")]
        assert len(paths) == 3 and all(len(line.get_xdata()) == 20 for line in paths)
