"""Publish the asv dashboard as a static site that works offline.

    cd benchmarks && python publish_dashboard.py [--config asv.conf.json]

Runs ``asv publish``, then serves the page's scripts and styles from ``dashboard/`` (copied
into the site) instead of the CDNs asv's ``index.html`` names, including the patched flot
orderBars plugin that makes bar charts of two or more series draw (see ``dashboard/README.md``).
Fails when any remote script or stylesheet is left. Open the result with ``asv preview`` or any
static file server (the page loads its data with requests, which ``file://`` does not allow).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE / "dashboard"
#: CDN file name (in asv's index.html) -> our copy
LOCAL = {
    "jquery-3.3.1.min.js": "vendor/jquery.min.js",
    "jquery.flot.min.js": "vendor/jquery.flot.js",
    "jquery.flot.time.min.js": "vendor/jquery.flot.time.js",
    "jquery.flot.selection.min.js": "vendor/jquery.flot.selection.js",
    "jquery.flot.categories.min.js": "vendor/jquery.flot.categories.js",
    "jquery.flot.orderBars.js": "vendor/jquery.flot.orderBars.js",
    "stupidtable.min.js": "vendor/stupidtable.min.js",
    "md5.min.js": "vendor/md5.min.js",
    "bootstrap.min.js": "vendor/bootstrap.min.js",
    "bootstrap.min.css": "vendor/bootstrap.min.css",
}
#: a script's or stylesheet's remote address (links to pages, <a href>, stay as they are)
REMOTE = re.compile(r'(<(?:script|link)\b[^>]*?\b(?:src|href))="(https?://[^"]+)"')


def html_dir(config):
    from asv.config import Config

    return Path(Config.load(str(config)).html_dir)


def localize(index: Path) -> int:
    """Point index.html's remote scripts and stylesheets at the copies; the number replaced.
    ValueError naming any remote reference that has no copy."""
    text = index.read_text()
    count = 0

    def swap(match):
        nonlocal count
        name = match.group(2).rsplit("/", 1)[-1]
        if name not in LOCAL:
            raise ValueError(f"{index}: no local copy of {match.group(2)} (add it to dashboard/ and LOCAL)")
        count += 1
        return f'{match.group(1)}="{LOCAL[name]}"'
    text = REMOTE.sub(swap, text)
    # the CDN copies are pinned by hash (integrity=); ours are the same releases, not the same bytes
    text = re.sub(r"<(?:script|link)\b[^>]*>",
                  lambda tag: re.sub(r'\s(?:integrity|crossorigin|referrerpolicy)="[^"]*"', "", tag.group(0)), text)
    left = REMOTE.findall(text)
    if left:
        raise ValueError(f"{index}: remote references left: {left}")
    index.write_text(text)
    return count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE / "asv.conf.json"))
    args = parser.parse_args(argv)
    subprocess.run([sys.executable, "-m", "asv", "publish", "--config", args.config], check=True, cwd=HERE)
    site = html_dir(args.config)
    if not site.is_absolute():
        site = Path(args.config).resolve().parent / site
    for folder in ("vendor", "fonts"):
        shutil.copytree(DASHBOARD / folder, site / folder, dirs_exist_ok=True)
    count = localize(site / "index.html")
    print(f"dashboard in {site}: {count} scripts and styles served from the site itself (offline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
