"""Render the configuration reference (docs/config.md) from the traits' help.

``python -m hub_collab.configdocs > docs/config.md`` regenerates it; a test
fails when the file and the code disagree.
"""

from __future__ import annotations

import inspect

HEADER = """# Configuration reference

Every setting is a trait of `HubCollab`. Set it in `hub_collab_config.py`
(`hub-collab -f hub_collab_config.py`; `hub-collab --generate-config` writes a
commented one) as `c.HubCollab.<name> = ...`, or on the command line as
`--HubCollab.<name>=...`. This page is generated from the code
(`python -m hub_collab.configdocs > docs/config.md`); a test keeps it current.
"""


def render() -> str:
    from .app import HubCollab

    traits = HubCollab.class_traits(config=True)
    dynamic = set(getattr(HubCollab, "_trait_default_generators", {}))
    out = [HEADER]
    for name in sorted(traits):
        trait = traits[name]
        if trait.this_class is not HubCollab:
            continue
        default = "computed (see below)" if name in dynamic else f"`{trait.default_value!r}`"
        out.append(f"## `{name}`\n\n*{type(trait).__name__}*, default {default}\n\n{inspect.cleandoc(trait.help or '')}\n")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
