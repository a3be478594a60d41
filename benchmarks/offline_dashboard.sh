#!/usr/bin/env bash
# Make the published asv dashboard (.asv/html) work without internet access: asv's index.html
# loads jQuery, flot, bootstrap and a few plugins from CDNs. This fetches the same versions from
# the npm registry (npm pack), copies them into .asv/html/vendor/ and points index.html at them.
# Run after `asv publish`; then `asv preview` (or any static server) shows the graphs offline.
set -euo pipefail
cd "$(dirname "$0")"
html=.asv/html
[ -f "$html/index.html" ] || { echo "run 'asv publish' first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && for p in jquery@3.3.1 flot@0.8.3 flot-orderbars@1.0.0 stupid-table-plugin@1.1.3 \
                        blueimp-md5@2.19.0 bootstrap@3.1.1; do
     npm pack "$p" --silent > /dev/null; done
 for f in *.tgz; do mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"; done)
mkdir -p "$html/vendor"
cp "$tmp"/jquery-3.3.1/package/dist/jquery.min.js \
   "$tmp"/flot-0.8.3/package/jquery.flot{,.time,.selection,.categories}.js \
   "$tmp"/flot-orderbars-1.0.0/package/js/jquery.flot.orderBars.js \
   "$tmp"/stupid-table-plugin-1.1.3/package/stupidtable.min.js \
   "$tmp"/blueimp-md5-2.19.0/package/js/md5.min.js \
   "$tmp"/bootstrap-3.1.1/package/dist/js/bootstrap.min.js \
   "$tmp"/bootstrap-3.1.1/package/dist/css/bootstrap.min.css "$html/vendor/"
sed -i -E \
  -e 's#"https://[^"]*/jquery-3\.3\.1\.min\.js"#"vendor/jquery.min.js"#' \
  -e 's#"https://[^"]*/(jquery\.flot(\.time|\.selection|\.categories)?)\.min\.js"#"vendor/\1.js"#' \
  -e 's#"https://[^"]*/(jquery\.flot\.orderBars\.js)"#"vendor/\1"#' \
  -e 's#"https://[^"]*/stupidtable\.min\.js"#"vendor/stupidtable.min.js"#' \
  -e 's#"https://[^"]*/md5\.min\.js"#"vendor/md5.min.js"#' \
  -e 's#"https://[^"]*/bootstrap\.min\.(js|css)"#"vendor/bootstrap.min.\1"#' \
  "$html/index.html"
# the pages pin the CDN files by hash (integrity=); the npm copies are the same releases but not
# always the same bytes (minified by npm, not by the CDN), so drop the pins of the local copies
sed -i -E '/vendor\//s/ integrity="[^"]*"//' "$html/index.html"
echo "dashboard in $html uses local copies of its scripts: $(grep -c 'vendor/' "$html/index.html") references"
