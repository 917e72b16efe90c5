"""Open built pages in headless Chromium and fail when a reader would see something broken.

Checks, per page, after MathJax and the widget manager have run:
- math: every ``.math`` element was typeset (holds an ``mjx-container``), and no raw TeX
  delimiters are left in the visible text;
- images: every ``<img>`` finished loading with a non-zero size, and every figure a cell drew
  sits in a numbered ``<figure>`` with a caption (the frames of a widget are exempt);
- widgets: where the page has widget views, the embedded widget state exists and every
  view was rendered by the widget manager (no kernel is needed in the static page).

It also saves a screenshot per page (``--shots DIR``), and one per numbered figure with its
caption (``--figure-shots DIR``, named ``<page>__fig<i>.png``), to look at: a page screenshot
shows one screen, not the figures further down.

Usage: ``python tools/check_pages.py SITE_DIR [PAGE ...] [--require math,image,widget] [--shots DIR]``
where PAGE is a path relative to SITE_DIR such as ``book/fast_jvp/derivation.html``;
without pages, every page under ``SITE_DIR/book`` is checked.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

PROBE = """() => {
  const math = [...document.querySelectorAll('.math')];
  const untypeset = math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60));
  const main = document.querySelector('main') || document.body;
  const raw = (main.innerText.match(/\\\\\\(|\\\\\\[|\\$\\$|\\\\begin\\{/g) || []).length;
  const imgs = [...document.querySelectorAll('main img')];
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => (i.currentSrc || i.src).slice(0, 80));
  const uncaptioned = imgs.filter(i => i.closest('.cell_output') && !i.closest('.jupyter-widgets, .widget-box')
      && !(i.closest('figure') && i.closest('figure').querySelector('figcaption'))).length;
  const views = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  const state = document.querySelectorAll('script[type="application/vnd.jupyter.widget-state+json"]').length;
  const rendered = document.querySelectorAll('.jupyter-widgets, .widget-slider, .widget-box').length;
  return {math: math.length, typeset: document.querySelectorAll('mjx-container').length, untypeset, raw,
          images: imgs.length, broken, uncaptioned, views, state, rendered};
}"""


EXPAND = """() => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
}"""


def figure_shots(page, folder: Path, stem: str) -> int:
    """Screenshot every captioned figure of the loaded page into ``folder``; return how many."""
    folder.mkdir(parents=True, exist_ok=True)
    # Figures in solutions and hidden cells sit in collapsed blocks: open them so they can be seen.
    page.evaluate(EXPAND)
    figures = page.locator("main figure:has(figcaption)")
    for i in range(figures.count()):
        figure = figures.nth(i)
        if not figure.is_visible():
            print(f"     {stem}: figure {i + 1} stays hidden after expanding, no screenshot")
            continue
        figure.screenshot(path=str(folder / f"{stem}__fig{i + 1}.png"), timeout=10_000)
    return figures.count()


def check_page(page, url: str, require: set[str], shot: Path | None,
               figures: Path | None = None) -> list[str]:
    """Load ``url`` and return the list of problems found (empty when the page is fine)."""
    page.goto(url, wait_until="load")
    page.wait_for_function("() => !window.MathJax || !MathJax.startup || MathJax.startup.promise", timeout=30_000)
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
    page.wait_for_timeout(1500)  # the widget manager renders views asynchronously after load
    r = page.evaluate(PROBE)
    problems = []
    if r["untypeset"]:
        problems.append(f"{len(r['untypeset'])} math element(s) left as raw TeX, e.g. {r['untypeset'][0]!r}")
    if r["raw"]:
        problems.append(f"{r['raw']} raw TeX delimiter(s) in the page text")
    if r["broken"]:
        problems.append(f"{len(r['broken'])} image(s) did not load, e.g. {r['broken'][0]!r}")
    if r["uncaptioned"]:
        problems.append(f"{r['uncaptioned']} figure(s) without a number and caption (see CONTRIBUTING.md, Tables and figures)")
    if r["views"] and not r["state"]:
        problems.append("widget views without embedded widget state")
    if r["views"] and r["rendered"] == 0:
        problems.append(f"{r['views']} widget view(s) not rendered by the widget manager")
    needs = {"math": r["typeset"], "image": r["images"], "widget": r["views"] and r["rendered"]}
    problems += [f"page has no {what} but one is required" for what in require if not needs[what]]
    if shot is not None:
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=False)
    if figures is not None:
        figure_shots(page, figures, url.split("/html/")[-1].replace("/", "__").removesuffix(".html"))
    print(f"{'FAIL' if problems else 'ok  '} {url.split('/html/')[-1]}: math {r['typeset']}/{r['math']}, "
          f"images {r['images']} ({len(r['broken'])} broken), widget views {r['views']} "
          f"(state {r['state']}, rendered {r['rendered']})")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("site", type=Path, help="the built HTML folder, e.g. _build/html")
    ap.add_argument("pages", nargs="*", help="pages relative to SITE (default: every page under book/)")
    ap.add_argument("--require", default="", help="comma list of math,image,widget every given page must have")
    ap.add_argument("--shots", type=Path, default=None, help="folder for one screenshot per page")
    ap.add_argument("--figure-shots", type=Path, default=None,
                    help="folder for one screenshot per captioned figure")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    site = args.site.resolve()
    pages = [site / p for p in args.pages] or sorted((site / "book").rglob("*.html"))
    missing = [str(p) for p in pages if not p.is_file()]
    if missing:
        print("missing pages: " + ", ".join(missing), file=sys.stderr)
        return 1
    require = {w for w in args.require.split(",") if w}
    if require - {"math", "image", "widget"}:
        ap.error(f"--require takes math,image,widget; got {args.require!r}")
    failures = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        for path in pages:
            rel = path.relative_to(site)
            shot = args.shots / (str(rel).replace("/", "__") + ".png") if args.shots else None
            problems = check_page(page, path.as_uri(), require, shot, args.figure_shots)
            if problems:
                failures[str(rel)] = problems
        browser.close()
    for rel, problems in failures.items():
        print(f"{rel}:\n  " + "\n  ".join(problems), file=sys.stderr)
    print(f"browser check: {len(pages) - len(failures)} page(s) fine, {len(failures)} with problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
