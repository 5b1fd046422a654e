#!/usr/bin/env bash
# Build the documentation site from docs/ (mkdocs.yml) into site/, strictly: a broken link, a
# missing page or a page left out of the navigation fails. Set up by scripts/setup.sh (.venv-docs).
#     bash scripts/docs.sh            # build into site/
#     bash scripts/docs.sh serve      # preview at http://127.0.0.1:8000
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-build}" = serve ]; then
  exec .venv-docs/bin/mkdocs serve --strict
fi
exec .venv-docs/bin/mkdocs build --strict --site-dir site
