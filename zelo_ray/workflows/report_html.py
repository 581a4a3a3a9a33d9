"""HTML pieces the reports share: the stylesheet, inline SVG figures, a value with its CI."""

from __future__ import annotations

import html
import io

__all__ = ["CSS", "ci", "figure", "svg"]

CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:.5em 0}
td,th{padding:.25em .7em;border-bottom:1px solid #eee;text-align:right}th:first-child,td:first-child{text-align:left}
.banner{background:#fff3cd;border:1px solid #e0c36b;padding:.5em 1em}.note{color:#666}
figure{margin:1em 0}table.fail td{text-align:left;vertical-align:top;max-width:30em}figcaption{color:#555;font-size:.9em}.up{color:#17703a}.down{color:#a3271f}"""


def svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    # no RDF metadata block: it carries a timestamp and links to outside vocabularies
    fig.savefig(buf, format="svg", bbox_inches="tight",
                metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG sits inside HTML


def figure(fig, caption: str) -> str:
    return f"<figure>{svg(fig)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def ci(m: dict | None, signed: bool = False) -> str:
    if not m or m.get("mean") is None:
        return "—"
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(m['mean'])} <span class=note>[{f.format(m['ci_low'])}, {f.format(m['ci_high'])}]</span>"
