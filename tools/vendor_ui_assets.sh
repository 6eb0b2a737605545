#!/usr/bin/env bash
# Refresh the JavaScript the /ui/ page serves from service/web/static/ui/vendor, from the npm
# registry (npm pack: no install, no build). The page loads nothing from another origin, so these
# files are part of the package. After running, review the diff and run tests/test_ui_assets.py.
#   vega: the runtime that draws the chart (the server compiles Vega-Lite to Vega with vl-convert).
#   vega-interpreter: evaluates Vega expressions without eval, so the page's CSP needs no 'unsafe-eval'.
#     It is an ES module importing three names from 'vega-util'; the import is pointed at
#     vega-util.js, a three-line module re-exporting them from the vega build.
#   markdown-it: renders a card's Markdown detail as an EHR would (raw HTML off).
set -euo pipefail
cd "$(dirname "$0")/.."
VEGA_VERSION="${VEGA_VERSION:-6.4.0}"
INTERPRETER_VERSION="${INTERPRETER_VERSION:-2.3.2}"
MARKDOWN_IT_VERSION="${MARKDOWN_IT_VERSION:-14.3.3}"
dest=service/web/static/ui/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "vega@$VEGA_VERSION" "vega-interpreter@$INTERPRETER_VERSION" \
                                  "markdown-it@$MARKDOWN_IT_VERSION" >/dev/null)
mkdir -p "$work/vega" "$work/interp" "$work/md"
tar xzf "$work/vega-$VEGA_VERSION.tgz" -C "$work/vega"
tar xzf "$work/vega-interpreter-$INTERPRETER_VERSION.tgz" -C "$work/interp"
tar xzf "$work/markdown-it-$MARKDOWN_IT_VERSION.tgz" -C "$work/md"
cp "$work/md/package/dist/markdown-it.min.js" "$dest/markdown-it.min.js"
cp "$work/md/package/LICENSE" "$dest/markdown-it.LICENSE.txt"
cp "$work/vega/package/build/vega.min.js" "$dest/vega.min.js"
cp "$work/vega/package/LICENSE" "$dest/vega.LICENSE.txt"
sed "s#from 'vega-util';#from './vega-util.js';#" "$work/interp/package/build/vega-interpreter.js" > "$dest/vega-interpreter.js"
cp "$work/interp/package/LICENSE" "$dest/vega-interpreter.LICENSE.txt"
python3 - "$dest" "$VEGA_VERSION" "$INTERPRETER_VERSION" "$MARKDOWN_IT_VERSION" <<'PY'
import hashlib, json, sys
from pathlib import Path
dest, vega, interp, markdown_it = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
files = ["vega.min.js", "vega-interpreter.js", "markdown-it.min.js"]
manifest = {
    "about": "Third-party files served by the /ui/ page, from the npm registry (tools/vendor_ui_assets.sh). "
             "vega-interpreter.js has one change: its import of 'vega-util' points at ./vega-util.js.",
    "packages": {"vega": vega, "vega-interpreter": interp, "markdown-it": markdown_it},
    "sha256": {name: hashlib.sha256((dest / name).read_bytes()).hexdigest() for name in files},
}
(dest / "VENDOR.json").write_text(json.dumps(manifest, indent=2) + "\n")
PY
echo "vendored vega $VEGA_VERSION, vega-interpreter $INTERPRETER_VERSION, markdown-it $MARKDOWN_IT_VERSION into $dest"
