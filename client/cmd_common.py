"""What several commands share: filters, the prune prompt and report, and
inspecting a list of objects with ``--format``."""

import sys

from pallet.client.docker import StatusError
from pallet.client.docker_api import DaemonError
from pallet.units.size import human_size


def parse_filters(values):
    """``--filter k=v`` flags to the API's filters JSON ({"k": {"v": true}}), or None."""
    if not values:
        return None
    import json
    filters = {}
    for f in values or ():
        k, sep, v = f.partition("=")
        if not sep:
            raise ValueError('invalid argument "%s" for "-f, --filter" flag: bad format of '
                             'filter (expected name=value)' % f)
        filters.setdefault(k.strip().lower(), {})[v] = True
    return json.dumps(filters) if filters else None


def confirm(warning):
    """docker's prompt (on stdout, answer read from stdin); True for y/yes."""
    sys.stdout.write(warning + "\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    try:
        answer = sys.stdin.readline() if sys.stdin is not None else ""
    except (OSError, ValueError):
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def report_deleted(cli, title, names, reclaimed=None):
    """'Deleted X:' and the names, then the space reclaimed (when it applies)."""
    out = ""
    if names:
        out += "Deleted %s:\n" % title + "".join(n + "\n" for n in names) + "\n"
    if reclaimed is not None:
        out += "Total reclaimed space: %s\n" % human_size(reclaimed or 0)
    cli.out(out)


def inspect_many(cli, names, path_of, fmt, not_found=None):
    """Inspect each name (``path_of(name)`` is its API path); print a JSON array
    or the template per object; daemon errors after, exit 1 when any."""
    found, errors = [], []
    for name in names:
        try:
            found.append(cli.client.get(path_of(name)))
        except DaemonError as e:
            errors.append(str(e) if not (not_found and e.status == 404) else not_found(name, e))
    tmpl = None
    if fmt and fmt != "json":
        from pallet.client.docker_template import parse_template
        tmpl = parse_template(fmt)
    return print_inspected(cli, found, errors, tmpl)


def print_inspected(cli, found, errors, tmpl=None):
    """What ``inspect`` commands print: the objects as an indented JSON array,
    or the parsed template ``tmpl`` run on each; then the errors, exit 1 when
    any."""
    if tmpl is not None:
        from pallet.client.docker_template import TemplateError, run_template
        rendered = []
        for obj in found:
            try:
                rendered.append(run_template(tmpl, obj) + "\n")
            except TemplateError as e:
                errors.append(str(e))
                break
        # docker's template inspector writes an empty line when nothing rendered
        cli.out("".join(rendered) or "\n")
    else:
        from pallet.client.docker_format import indent_json
        cli.outln(indent_json(found))
    if errors:
        raise StatusError("\n".join(errors), 1)
    return 0


def each(cli, names, action):
    """Run ``action(name)`` for each name, print the name on success, gather the
    errors (exit 1 when any)."""
    errors = []
    for name in names:
        try:
            action(name)
        except DaemonError as e:
            errors.append(str(e))
            continue
        cli.outln(name)
    if errors:
        raise StatusError("\n".join(errors), 1)
    return 0


def list_format(opts, default, quiet_field="{{.ID}}"):
    """The template of a list command: -q, --format (json/table/template), the default."""
    if getattr(opts, "quiet", False):
        return quiet_field
    fmt = getattr(opts, "format", "")
    if fmt == "json":
        return "{{json .}}"
    if fmt == "table":
        return default
    return fmt or default
