"""A small subset of Go's text/template, enough for docker's ``--format``.

Fields (``.A.B``), variables (``$x``, ``$k, $v :=``), pipelines, parentheses,
``if``/``else if``/``else``/``range``/``with``/``end``, trim markers, Go's
builtins (``index``, ``len``, ``print*``, ``eq``..., ``and``/``or``/``not``)
and docker's own functions (``json``, ``join``, ``split``, ``lower``,
``upper``, ``title``, ``pad``, ``truncate``).  Data is what JSON decodes to,
plus row objects answering ``template_field(name, args)``.
"""


from pallet.client.docker_format import go_json, go_quote, go_str


class TemplateError(Exception):
    """Parse or execution error; str() is docker's 'template parsing error: …' text."""


class _Tok:
    __slots__ = ("kind", "val", "pos")

    def __init__(self, kind, val, pos):
        self.kind, self.val, self.pos = kind, val, pos


def _is_ident_char(c):
    return c.isalnum() or c == "_"


def _lex_action(src, start, end):
    """Tokens of the action text src[start:end]."""
    toks = []
    i = start
    while i < end:
        c = src[i]
        if c in " \t\r\n":
            i += 1
        elif c == '"':
            j = i + 1
            while j < end and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            if j >= end:
                raise TemplateError("unterminated quoted string")
            try:
                import json
                val = json.loads(src[i:j + 1])
            except ValueError:
                import ast
                val = ast.literal_eval(src[i:j + 1])
            toks.append(_Tok("str", val, i))
            i = j + 1
        elif c == "`":
            j = src.find("`", i + 1, end)
            if j < 0:
                raise TemplateError("unterminated raw quoted string")
            toks.append(_Tok("str", src[i + 1:j], i))
            i = j + 1
        elif c == ".":
            j = i
            names = []
            while j < end and src[j] == ".":
                k = j + 1
                while k < end and _is_ident_char(src[k]):
                    k += 1
                if k == j + 1:
                    if names:
                        raise TemplateError("unexpected . after term")
                    j = k
                    break
                names.append(src[j + 1:k])
                j = k
            toks.append(_Tok("field", tuple(names), i))
            i = j
        elif c == "$":
            j = i + 1
            while j < end and _is_ident_char(src[j]):
                j += 1
            name = src[i:j]
            names = []
            while j < end and src[j] == ".":
                k = j + 1
                while k < end and _is_ident_char(src[k]):
                    k += 1
                names.append(src[j + 1:k])
                j = k
            toks.append(_Tok("var", (name, tuple(names)), i))
            i = j
        elif c.isdigit() or (c in "+-" and i + 1 < end and src[i + 1].isdigit()):
            j = i + 1
            while j < end and (src[j].isalnum() or src[j] in "._+-"):
                j += 1
            text = src[i:j]
            try:
                val = int(text, 0)
            except ValueError:
                try:
                    val = float(text)
                except ValueError:
                    raise TemplateError("bad number syntax: %r" % text) from None
            toks.append(_Tok("num", val, i))
            i = j
        elif _is_ident_char(c):
            j = i
            while j < end and _is_ident_char(src[j]):
                j += 1
            toks.append(_Tok("ident", src[i:j], i))
            i = j
        elif src.startswith(":=", i):
            toks.append(_Tok("decl", ":=", i))
            i += 2
        elif c in "()|,=":
            toks.append(_Tok(c, c, i))
            i += 1
        else:
            raise TemplateError("unexpected %r in command" % c)
    return toks


# Nodes: ("text", s) ("action", pipe) ("if"|"with", pipe, body, else) ("range", pipe, body, else)
# pipe: (decl_names, [command]) ; command: [operand] ; operand: token or ("pipe", pipe)


class Template:
    """A parsed Go template; ``execute(data)`` returns the text."""

    def __init__(self, src, funcs=None):
        self.src = src
        self.funcs = dict(_FUNCS)
        if funcs:
            self.funcs.update(funcs)
        items = self._split(src)
        self._items = items
        self._i = 0
        self.root, stop = self._parse_list()
        if stop is not None:
            raise TemplateError(self._err_pos(stop[1], "unexpected {{%s}}" % stop[0]))

    # -- parsing --
    def _err_pos(self, pos, msg):
        line = self.src.count("\n", 0, pos) + 1
        return "template: :%d: %s" % (line, msg)

    def _split(self, src):
        items = []
        i = 0
        pending_trim = False
        while True:
            j = src.find("{{", i)
            if j < 0:
                text = src[i:]
                if pending_trim:
                    text = text.lstrip(" \t\r\n")
                if text:
                    items.append(("text", text))
                break
            text = src[i:j]
            if pending_trim:
                text = text.lstrip(" \t\r\n")
            astart = j + 2
            if src.startswith("- ", astart) or src.startswith("-\t", astart) or src.startswith("-\n", astart):
                text = text.rstrip(" \t\r\n")
                astart += 1
            if text:
                items.append(("text", text))
            k = src.find("}}", astart)
            if k < 0:
                raise TemplateError(self._err_pos(j, "unclosed action"))
            aend = k
            pending_trim = False
            if aend - 1 >= astart and src[aend - 1] == "-" and aend - 2 >= astart and \
                    src[aend - 2] in " \t\r\n":
                aend -= 1
                pending_trim = True
            body = src[astart:aend].strip()
            if body.startswith("/*"):
                i = k + 2
                continue
            items.append(("action", astart, aend))
            i = k + 2
        return items

    def _next_item(self):
        if self._i >= len(self._items):
            return None
        it = self._items[self._i]
        self._i += 1
        return it

    def _parse_list(self):
        """Parse nodes until {{end}} / {{else}}; return (nodes, stopper)."""
        nodes = []
        while True:
            it = self._next_item()
            if it is None:
                return nodes, None
            if it[0] == "text":
                nodes.append(("text", it[1]))
                continue
            toks = _lex_action(self.src, it[1], it[2])
            if not toks:
                raise TemplateError(self._err_pos(it[1], "missing value for command"))
            first = toks[0]
            if first.kind == "ident" and first.val in ("end", "else"):
                return nodes, (first.val, first.pos, toks[1:])
            if first.kind == "ident" and first.val in ("if", "with", "range"):
                nodes.append(self._parse_control(first.val, first.pos, toks[1:]))
                continue
            if first.kind == "ident" and first.val in ("define", "template", "block", "break",
                                                      "continue"):
                raise TemplateError(self._err_pos(first.pos, "{{%s}} is not supported" % first.val))
            nodes.append(("action", self._parse_pipe(toks), first.pos))

    def _parse_control(self, kind, pos, toks):
        pipe = self._parse_pipe(toks, allow_two_vars=(kind == "range"))
        body, stop = self._parse_list()
        if stop is None:
            raise TemplateError(self._err_pos(pos, "unexpected EOF"))
        else_body = []
        if stop[0] == "else":
            rest = stop[2]
            if rest and rest[0].kind == "ident" and rest[0].val in ("if", "with"):
                # {{else if ...}} is {{else}}{{if ...}}...{{end}} sharing the outer end
                else_body = [self._parse_control(rest[0].val, rest[0].pos, rest[1:])]
                return (kind, pipe, body, else_body, pos)
            else_body, stop = self._parse_list()
            if stop is None or stop[0] != "end":
                raise TemplateError(self._err_pos(pos, "expected end; found %s" %
                                                  (stop[0] if stop else "EOF")))
        return (kind, pipe, body, else_body, pos)

    def _parse_pipe(self, toks, allow_two_vars=False):
        decl = []
        # $x := ... or $k, $v := ...
        if toks and toks[0].kind == "var":
            if len(toks) > 1 and toks[1].kind in ("decl", "="):
                decl = [toks[0].val[0]]
                toks = toks[2:]
            elif allow_two_vars and len(toks) > 3 and toks[1].kind == "," and \
                    toks[2].kind == "var" and toks[3].kind in ("decl", "="):
                decl = [toks[0].val[0], toks[2].val[0]]
                toks = toks[4:]
        cmds = []
        cur = []
        i = 0
        while i < len(toks):
            t = toks[i]
            if t.kind == "|":
                if not cur:
                    raise TemplateError(self._err_pos(t.pos, "missing command"))
                cmds.append(cur)
                cur = []
                i += 1
            elif t.kind == "(":
                depth, j = 1, i + 1
                while j < len(toks) and depth:
                    if toks[j].kind == "(":
                        depth += 1
                    elif toks[j].kind == ")":
                        depth -= 1
                    j += 1
                if depth:
                    raise TemplateError(self._err_pos(t.pos, "unclosed left paren"))
                sub = self._parse_pipe(toks[i + 1:j - 1])
                cur.append(("pipe", sub, t.pos))
                i = j
            elif t.kind in (")", ",", "decl", "="):
                raise TemplateError(self._err_pos(t.pos, "unexpected %r in operand" % t.val))
            else:
                cur.append(t)
                i += 1
        if not cur:
            raise TemplateError("template: :1: missing value for command")
        cmds.append(cur)
        return (decl, cmds)

    # -- execution --
    def execute(self, data):
        out = []
        scope = [{"$": data}]
        try:
            self._exec_list(self.root, data, scope, out)
        except TemplateError:
            raise
        except RecursionError:
            raise TemplateError("template: :1: exceeded maximum template depth") from None
        return "".join(out)

    def _where(self, pos, what, msg):
        line = self.src.count("\n", 0, pos) + 1
        col = pos - (self.src.rfind("\n", 0, pos) + 1)
        return TemplateError('template: :%d:%d: executing "" at <%s>: %s' % (line, col, what, msg))

    def _exec_list(self, nodes, dot, scope, out):
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "action":
                decl, _ = node[1]
                val = self._eval_pipe(node[1], dot, scope)
                if decl:
                    scope[-1][decl[0]] = val
                else:
                    out.append(go_str(val))
            elif kind in ("if", "with"):
                val = self._eval_pipe(node[1], dot, scope)
                if truth(val):
                    scope.append({})
                    self._exec_list(node[2], val if kind == "with" else dot, scope, out)
                    scope.pop()
                elif node[3]:
                    scope.append({})
                    self._exec_list(node[3], dot, scope, out)
                    scope.pop()
            elif kind == "range":
                decl = node[1][0]
                val = self._eval_pipe((tuple(), node[1][1]), dot, scope)
                if isinstance(val, dict):
                    pairs = [(k, val[k]) for k in sorted(val)]
                elif isinstance(val, (list, tuple)):
                    pairs = list(enumerate(val))
                elif isinstance(val, int) and not isinstance(val, bool):
                    pairs = [(i, i) for i in range(val)]
                elif val is None:
                    pairs = []
                else:
                    raise self._where(node[4], "range", "range can't iterate over %s" % go_str(val))
                if not pairs and node[3]:
                    scope.append({})
                    self._exec_list(node[3], dot, scope, out)
                    scope.pop()
                for k, v in pairs:
                    frame = {}
                    if len(decl) == 1:
                        frame[decl[0]] = v
                    elif len(decl) == 2:
                        frame[decl[0]] = k
                        frame[decl[1]] = v
                    scope.append(frame)
                    self._exec_list(node[2], v, scope, out)
                    scope.pop()

    def _eval_pipe(self, pipe, dot, scope):
        _, cmds = pipe
        val = _MISSING
        for cmd in cmds:
            val = self._eval_cmd(cmd, dot, scope, val)
        return val

    def _eval_cmd(self, cmd, dot, scope, piped):
        first = cmd[0]
        if isinstance(first, _Tok) and first.kind == "ident" and first.val not in ("true", "false", "nil"):
            fn = self.funcs.get(first.val)
            if fn is None:
                raise TemplateError(self._err_pos(first.pos, 'function "%s" not defined' % first.val))
            args = [self._eval_arg(a, dot, scope) for a in cmd[1:]]
            if piped is not _MISSING:
                args.append(piped)
            try:
                return fn(*args)
            except TemplateError:
                raise
            except Exception as e:  # a builtin given the wrong arguments
                raise self._where(first.pos, first.val, "error calling %s: %s" % (first.val, e)) from None
        if isinstance(first, _Tok) and first.kind in ("field", "var") and (len(cmd) > 1 or piped is not _MISSING):
            # method call with arguments: {{.Label "com.example"}}
            args = [self._eval_arg(a, dot, scope) for a in cmd[1:]]
            if piped is not _MISSING:
                args.append(piped)
            return self._eval_arg(first, dot, scope, args)
        if len(cmd) > 1 or piped is not _MISSING:
            pos = first.pos if isinstance(first, _Tok) else first[2]
            raise TemplateError(self._err_pos(pos, "can't give argument to non-function"))
        return self._eval_arg(first, dot, scope)

    def _eval_arg(self, a, dot, scope, args=None):
        if isinstance(a, tuple):  # parenthesised pipeline
            return self._eval_pipe(a[1], dot, scope)
        if a.kind in ("str", "num"):
            return a.val
        if a.kind == "ident":
            if a.val == "true":
                return True
            if a.val == "false":
                return False
            if a.val == "nil":
                return None
            fn = self.funcs.get(a.val)
            if fn is None:
                raise TemplateError(self._err_pos(a.pos, 'function "%s" not defined' % a.val))
            return fn()
        if a.kind == "field":
            return self._walk(dot, a.val, a, args)
        if a.kind == "var":
            name, names = a.val
            for frame in reversed(scope):
                if name in frame:
                    return self._walk(frame[name], names, a, args)
            raise TemplateError(self._err_pos(a.pos, "undefined variable: %s" % name))
        raise TemplateError(self._err_pos(a.pos, "unexpected %r" % a.val))

    def _walk(self, obj, names, tok, args=None):
        text = ("." + ".".join(names)) if tok.kind == "field" else (
            tok.val[0] + "".join("." + n for n in names))
        used_args = False
        for i, name in enumerate(names):
            last = i == len(names) - 1
            if hasattr(obj, "template_field"):
                try:
                    obj = obj.template_field(name, tuple(args) if last and args else ())
                except KeyError:
                    raise self._where(tok.pos, text, "can't evaluate field %s in type %s"
                                      % (name, getattr(obj, "GO_TYPE", type(obj).__name__))) from None
                used_args = last
            elif isinstance(obj, dict):
                if name not in obj:
                    fpos = tok.pos + (0 if tok.kind == "field" else len(tok.val[0])) + \
                        sum(len(n) + 1 for n in names[:i])
                    raise self._where(fpos, text, 'map has no entry for key "%s"' % name)
                obj = obj[name]
            elif obj is None:
                raise self._where(tok.pos, text, "nil pointer evaluating interface {}.%s" % name)
            else:
                raise self._where(tok.pos, text, "can't evaluate field %s in type %s"
                                  % (name, _go_type(obj)))
        if args and not used_args:
            raise self._where(tok.pos, text, "can't give argument to non-function %s" % text)
        return obj


class _Missing:
    pass


_MISSING = _Missing()


def _go_type(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (int, float)):
        return "float64"
    if isinstance(v, list):
        return "[]interface {}"
    return type(v).__name__


def truth(v):
    """Go template truthiness: false, 0, nil and empty things are false."""
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    return True


def _index(obj, *keys):
    for k in keys:
        if isinstance(obj, dict):
            obj = obj.get(k)
        elif isinstance(obj, (list, tuple, str)):
            if not isinstance(k, int) or not 0 <= k < len(obj):
                raise TemplateError("error calling index: index out of range: %s" % go_str(k))
            obj = obj[k]
        elif obj is None:
            raise TemplateError("error calling index: index of untyped nil")
        else:
            raise TemplateError("error calling index: can't index item of type %s" % _go_type(obj))
    return obj


def _printf(fmt, *args):
    out = []
    i = 0
    ai = 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        j = i + 1
        while j < len(fmt) and fmt[j] in "+-# 0123456789.":
            j += 1
        if j >= len(fmt):
            out.append("%!(NOVERB)")
            break
        verb = fmt[j]
        flags = fmt[i + 1:j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        if ai >= len(args):
            out.append("%!" + verb + "(MISSING)")
            continue
        a = args[ai]
        ai += 1
        if verb in "vs":
            s = go_str(a)
        elif verb == "q":
            s = go_quote(go_str(a))
        elif verb == "d" and isinstance(a, (int, float)) and not isinstance(a, bool):
            s = str(int(a)) if isinstance(a, int) else "%!d(float64=" + go_str(a) + ")"
        elif verb in "feg" and isinstance(a, (int, float)):
            s = ("%" + flags + verb) % a
            flags = ""
        elif verb == "t" and isinstance(a, bool):
            s = go_str(a)
        elif verb == "x" and isinstance(a, (int, str)):
            s = ("%x" % a) if isinstance(a, int) else a.encode().hex()
        else:
            s = "%!" + verb + "(" + _go_type(a) + "=" + go_str(a) + ")"
        if flags:
            width = "".join(ch for ch in flags if ch.isdigit())
            if width:
                w = int(width)
                s = s.ljust(w) if "-" in flags else s.rjust(w)
        out.append(s)
    return "".join(out)


def _cmp(op):
    def f(a, *bs):
        if op == "eq" and len(bs) > 1:
            return any(a == b for b in bs)
        if len(bs) != 1:
            raise TemplateError("wrong number of args for %s" % op)
        b = bs[0]
        if op == "eq":
            return a == b
        if op == "ne":
            return a != b
        try:
            return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op]
        except TypeError:
            raise TemplateError("incompatible types for comparison") from None
    return f


def _and(*args):
    v = True
    for v in args:
        if not truth(v):
            return v
    return v


def _or(*args):
    v = False
    for v in args:
        if truth(v):
            return v
    return v


def _join(items, sep):
    if not isinstance(items, (list, tuple)):
        raise TemplateError("wrong type for value; expected []string")
    return sep.join(go_str(x) for x in items)


def _len(v):
    if v is None:
        raise TemplateError("error calling len: len of nil pointer")
    if isinstance(v, (str, list, tuple, dict)):
        return len(v.encode()) if isinstance(v, str) else len(v)
    raise TemplateError("error calling len: len of type %s" % _go_type(v))


def _println(*args):
    return " ".join(go_str(a) for a in args) + "\n"


def _print(*args):
    # Go adds spaces between operands when neither is a string
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_str(a))
    return "".join(out)


_FUNCS = {
    "json": lambda v: go_json(v.to_json() if hasattr(v, "to_json") else v,
                              escape_html=hasattr(v, "to_json")),
    "join": _join,
    "split": lambda s, sep: s.split(sep) if sep else list(s),
    "lower": lambda s: s.lower(),
    "upper": lambda s: s.upper(),
    "title": lambda s: " ".join(w[:1].upper() + w[1:] for w in s.split(" ")),
    "pad": lambda s, l, r: " " * int(l) + go_str(s) + " " * int(r),
    "truncate": lambda s, n: s[: int(n)],
    "index": _index,
    "len": _len,
    "print": _print,
    "println": _println,
    "printf": _printf,
    "not": lambda v: not truth(v),
    "and": _and,
    "or": _or,
    "eq": _cmp("eq"),
    "ne": _cmp("ne"),
    "lt": _cmp("lt"),
    "le": _cmp("le"),
    "gt": _cmp("gt"),
    "ge": _cmp("ge"),
    "urlquery": lambda *a: __import__("urllib.parse").parse.quote_plus(_print(*a)),
    "html": lambda *a: _print(*a).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    .replace('"', "&#34;").replace("'", "&#39;"),
}


def parse_template(fmt):
    """Parse *fmt*; raise TemplateError with docker's 'template parsing error' prefix."""
    try:
        return Template(fmt)
    except TemplateError as e:
        raise TemplateError("template parsing error: %s" % e) from None


def run_template(tmpl, data):
    try:
        return tmpl.execute(data)
    except TemplateError as e:
        raise TemplateError("template parsing error: %s" % e) from None
