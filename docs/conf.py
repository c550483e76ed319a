"""Sphinx configuration: the docs/ Markdown pages, parsed by MyST, built with `make docs`
(warnings are errors, in CI too)."""

project = "bnstudy"
author = "the bnstudy authors"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 4
html_theme = "furo"
html_title = "bnstudy"
exclude_patterns = ["_build", "figures/**/*.md"]
