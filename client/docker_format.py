"""Output formatting as docker's CLI does it.

- ``since``: "3 minutes ago" (go-units' HumanDuration, in :mod:`pallet.units`).
- ``tabwrite``: Go's text/tabwriter with docker's settings (minwidth,
  padding 3, spaces).
- ``render_rows``: ``ps``/``images`` rows through a ``--format`` template
  (``docker_template``), with the ``table`` header row.
"""

import time

from pallet.units.duration import human_duration


def since(ts, now=None):
    """'N units ago' for a unix timestamp."""
    now = time.time() if now is None else now
    return human_duration(max(0.0, now - ts)) + " ago"


def go_time(ts):
    """Go's default time format in local time: '2006-01-02 15:04:05 -0700 MST'."""
    lt = time.localtime(int(ts))
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", lt)


def parse_rfc3339(s):
    """Unix time (float) of an RFC 3339 timestamp with nanoseconds, or None."""
    if not s or s.startswith("0001-01-01"):
        return None
    import calendar
    main, frac = s, ""
    tz = 0
    if main.endswith("Z"):
        main = main[:-1]
    elif len(main) > 6 and main[-6] in "+-" and main[-3] == ":":
        sign = 1 if main[-6] == "+" else -1
        tz = sign * (int(main[-5:-3]) * 3600 + int(main[-2:]) * 60)
        main = main[:-6]
    if "." in main:
        main, frac = main.split(".", 1)
    try:
        t = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    return t - tz + (float("0." + frac) if frac.isdigit() else 0.0)


def truncate_id(id_):
    """Docker's short id: without the 'sha256:' prefix, 12 characters."""
    if ":" in id_:
        id_ = id_.split(":", 1)[1]
    return id_[:12]


def ellipsis(s, width):
    """Cut *s* to *width* characters, the last one being '…'."""
    if len(s) <= width:
        return s
    if width <= 0:
        return ""
    return s[: width - 1] + "…"


def go_quote(s):
    """Go's strconv.Quote: double quotes, backslash escapes, printable unicode kept."""
    from pallet.engine.build_gofmt import quote
    return quote(s)


def go_json(value, escape_html=False):
    """JSON as Go's encoder writes it (compact, UTF-8, optional HTML escaping)."""
    import json
    s = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if escape_html:
        s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def indent_json(value):
    """``docker inspect``'s array layout: 4-space indent, HTML characters escaped
    as the daemon's encoder wrote them."""
    import json
    s = json.dumps(value, indent=4, ensure_ascii=False)
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# -- tabwriter --------------------------------------------------------------
def tabwrite(text, minwidth=10, padding=3):
    """Align tab-separated cells like Go's tabwriter (padchar ' ', no flags).

    A cell is text ended by a tab; the text after a line's last tab is not
    aligned.  A column's width is set per block of consecutive lines having
    that column: max(cell width + padding, minwidth).
    """
    lines = text.split("\n")
    cells = [ln.split("\t") for ln in lines]
    ncols = max((len(c) - 1 for c in cells), default=0)
    widths = [[0] * max(0, len(c) - 1) for c in cells]
    for col in range(ncols):
        i = 0
        while i < len(cells):
            if len(cells[i]) - 1 <= col:
                i += 1
                continue
            j = i
            w = minwidth
            while j < len(cells) and len(cells[j]) - 1 > col:
                w = max(w, len(cells[j][col]) + padding)
                j += 1
            for k in range(i, j):
                widths[k][col] = w
            i = j
    out = []
    for c, ws in zip(cells, widths):
        out.append("".join(cell.ljust(w) for cell, w in zip(c[:-1], ws)) + c[-1])
    return "\n".join(out)


# -- Go value printing ------------------------------------------------------
def go_str(v):
    """fmt's %v for values decoded from JSON (and our context values)."""
    if v is None:
        return "<no value>"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        r = repr(v)
        if "e" in r:
            m, _, e = r.partition("e")
            sign = "-" if e.startswith("-") else "+"
            e = e.lstrip("+-").rjust(2, "0")
            r = m + "e" + sign + e
        return r
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_go_inner(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join("%s:%s" % (k, _go_inner(v[k])) for k in sorted(v)) + "]"
    return str(v)


def _go_inner(v):
    return "<nil>" if v is None else go_str(v)


# -- list formatting (ps, images) ------------------------------------------
def is_table(fmt):
    return fmt.startswith("table")


def render_rows(fmt, rows, header_ctx,
                errors=("failed to parse template", "failed to execute template")):
    """Render *rows* (context objects) with a docker list format.

    *fmt* is ``table [TEMPLATE]`` or a bare template; docker replaces the
    two-character sequences ``\\t`` and ``\\n`` with tab and newline first.
    ``header_ctx`` answers each field with its column title.
    """
    from pallet.client.docker_template import Template, TemplateError
    table = is_table(fmt)
    body = fmt[5:] if table else fmt
    body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    try:
        tmpl = Template(body)
    except TemplateError as e:
        raise TemplateError("%s: %s" % (errors[0], e)) from None
    lines = []
    try:
        if table:
            lines.append(tmpl.execute(header_ctx))
        for r in rows:
            lines.append(tmpl.execute(r))
    except TemplateError as e:
        raise TemplateError("%s: %s" % (errors[1], e)) from None
    if not lines:
        return ""
    text = "\n".join(lines) + "\n"
    if table:
        text = tabwrite(text)
    return text


class RowContext:
    """One row of a list command; template fields are ``f_<Name>`` methods.

    ``FIELDS`` maps each field name to its table header (a string, or a
    function of the field's arguments, as for ``{{.Label "name"}}``).
    """

    FIELDS = {}
    JSON_FIELDS = ()
    GO_TYPE = "*formatter.Context"

    def template_field(self, name, args):
        if name not in self.FIELDS:
            raise KeyError(name)
        return getattr(self, "f_" + name)(*args)

    def to_json(self):
        return {k: getattr(self, "f_" + k)() for k in sorted(self.JSON_FIELDS or self.FIELDS)}


class HeaderContext:
    """Answers each field of a RowContext class with its column title."""

    def __init__(self, row_class):
        self.row_class = row_class
        self.GO_TYPE = row_class.GO_TYPE

    def template_field(self, name, args):
        header = self.row_class.FIELDS[name]
        return header(*args) if callable(header) else header

    def to_json(self):
        return {k: v for k, v in sorted(self.row_class.FIELDS.items()) if not callable(v)}
