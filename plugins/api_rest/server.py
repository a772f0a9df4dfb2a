"""palletd's aiohttp application: routing (versioned and unversioned paths),
the one function that maps errors to docker's JSON error, and the listeners
chosen with ``-H`` (unix://, tcp://, fd://)."""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import re

from aiohttp import web
from aiohttp.web_urldispatcher import MatchInfoError

from pallet.core import errors

log = logging.getLogger("pallet.api_rest")

from pallet.engine.system import API_VERSION, MIN_API_VERSION  # noqa: E402  (the engine's)


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".") if x.isdigit())


def json_response(obj, status: int = 200) -> web.Response:
    """A JSON answer whose Content-Type is exactly ``application/json``: the docker
    client only decodes error bodies when it compares equal."""
    return web.Response(body=json.dumps(obj).encode(), status=status,
                        headers={"Content-Type": "application/json"})


# --- errors -------------------------------------------------------------------

def error_response(exc: BaseException) -> web.Response:
    """THE mapping from an exception to docker's ``{"message": ...}`` answer.

    Pallet errors carry their HTTP status; aiohttp's own (no route, wrong
    method, bad request line) keep theirs; anything else is reported as a 500
    with its message only, never a traceback.
    """
    if isinstance(exc, errors.PalletError):
        status, message = exc.http_status, exc.message
    elif isinstance(exc, web.HTTPException):
        status = exc.status
        message = {404: "page not found", 405: "method not allowed"}.get(status, exc.reason)
        if exc.text and not exc.text.startswith(str(status)):
            message = exc.text
    elif isinstance(exc, json.JSONDecodeError):
        status, message = 400, f"invalid JSON: {exc.msg}"
    elif isinstance(exc, (ValueError, TypeError, KeyError)):
        status, message = 400, f"invalid request: {exc}"
    elif isinstance(exc, RecursionError):  # input nested deeper than any client sends
        status, message = 400, "invalid request: nested too deep"
    else:
        status, message = 500, f"{type(exc).__name__}: {exc}"
    if status == 304:
        return web.Response(status=304)
    return json_response({"message": message}, status=status)


_HEADERS = (("Api-Version", API_VERSION), ("Server", "Docker/pallet (linux)"),
            ("Docker-Experimental", "false"), ("Ostype", "linux"))


@web.middleware
async def error_middleware(request: web.Request, handler):
    """The one wrapper around every handler: the API version check, docker's
    JSON error for any failure, and the headers docker puts on every answer."""
    try:
        check_api_version(request)
        resp = await handler(request)
    except asyncio.CancelledError:
        raise
    except ConnectionResetError:
        raise
    except Exception as exc:  # noqa: BLE001 — every failure becomes docker's JSON error
        if isinstance(exc, (web.HTTPSuccessful, web.HTTPRedirection)):
            raise
        if not isinstance(exc, (errors.PalletError, web.HTTPException)):
            log.exception("%s %s failed", request.method, request.path)
        if request.get("hijacked"):
            raise  # the connection was already taken over: nothing more can be said on it
        resp = error_response(exc)
    if not resp.prepared:
        headers = resp.headers
        for name, value in _HEADERS:
            if name not in headers:
                headers[name] = value
    return resp


def check_api_version(request: web.Request) -> None:
    v = request.match_info.get("api_version")
    if v:
        problem = _version_problem(v[1:])
        if problem:
            raise errors.InvalidArgument(problem)


@functools.lru_cache(maxsize=64)
def _version_problem(v: str) -> str | None:
    if _vtuple(v) > _vtuple(API_VERSION):
        return f"client version {v} is too new. Maximum supported API version is {API_VERSION}"
    if _vtuple(v) < _vtuple(MIN_API_VERSION):
        return (f"client version {v} is too old. Minimum supported API version is "
                f"{MIN_API_VERSION}, please upgrade your client to a newer version")
    return None


def version_at_least(version: str, minimum: str) -> bool:
    return _vtuple(version) >= _vtuple(minimum)


def api_version(request: web.Request) -> str:
    v = request.match_info.get("api_version")
    return v[1:] if v else API_VERSION


# --- request helpers ------------------------------------------------------------

async def json_body(request: web.Request, *, optional: bool = False):
    """The request's JSON body; malformed JSON is a 400, as in dockerd."""
    raw = await request.read()
    if not raw.strip():
        if optional:
            return None
        raise errors.InvalidArgument("bad parameter: request body is empty")
    ctype = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
    if ctype not in ("application/json", "", "text/plain"):
        raise errors.InvalidArgument(f"unsupported Content-Type header ({ctype}): must be "
                                     "'application/json'")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.InvalidArgument(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise errors.InvalidArgument(too_deep(raw)) from None


def too_deep(raw: bytes, limit: int = 512) -> str:
    """Go's encoding/json message for a body nested past what it decodes
    (no client nests this deep; Python's decoder stops at its recursion
    limit, and the request gets dockerd's 400 rather than a 500)."""
    depth, in_str, escaped = 0, False, False
    for b in raw:
        if in_str:
            if escaped:
                escaped = False
            elif b == 0x5C:
                escaped = True
            elif b == 0x22:
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return f"invalid character '{chr(b)}' exceeded max depth"
        elif b in (0x5D, 0x7D):
            depth -= 1
    return "invalid JSON: nested too deep"


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    """docker's boolean query values: absent -> default; "", "0", "false", "no" -> False."""
    v = request.query.get(name)
    if v is None:
        return default
    return v.strip().lower() not in ("", "0", "false", "no", "off")


def qint(request: web.Request, name: str, default: int | None = None) -> int | None:
    v = request.query.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise errors.InvalidArgument(f"invalid value for {name}: {v!r}") from None


def qfilters(request: web.Request) -> dict[str, list[str]]:
    """The ``filters`` query parameter: ``{"status": ["exited"]}`` or the old map form."""
    raw = request.query.get("filters")
    if not raw:
        return {}
    try:
        obj = json.loads(raw)
    except ValueError:
        raise errors.InvalidArgument(f"invalid filter {raw!r}") from None
    if not isinstance(obj, dict):
        raise errors.InvalidArgument(f"invalid filter {raw!r}")
    out: dict[str, list[str]] = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            out[k] = [x for x, on in v.items() if on]
        elif isinstance(v, list):
            out[k] = [str(x) for x in v]
        else:
            raise errors.InvalidArgument(f"invalid filter {raw!r}")
    return out


# --- routing --------------------------------------------------------------------

class Routes:
    """Adds a route at its unversioned path; :class:`VersionedRouter` serves it
    under ``/v1.NN`` too."""

    def __init__(self, app: web.Application):
        self.app = app

    def add(self, method: str, path: str, handler) -> None:
        self.app.router.add_route(method, path, handler)


_VERSIONED = re.compile(r"/(v[0-9]+(?:\.[0-9]+)?)(/.*)", re.DOTALL)


class _Retargeted:
    """What resources look at when they match a request: its method and path."""

    __slots__ = ("method", "rel_url")

    def __init__(self, method: str, rel_url):
        self.method = method
        self.rel_url = rel_url


class VersionedRouter(web.UrlDispatcher):
    """Routes ``/v1.NN/PATH`` as ``/PATH``, with ``api_version`` in the match info.

    aiohttp indexes resources by the literal start of their path: routes
    registered as ``/{api_version}/...`` would all share the index entry ``/``
    and be tried one by one (80 us for a late one), so the version is split
    off here and the rest looked up in the index like an unversioned path."""

    async def resolve(self, request):
        m = _VERSIONED.fullmatch(request.rel_url.raw_path)
        if m is None:
            return await super().resolve(request)
        from yarl import URL

        info = await super().resolve(_Retargeted(request.method,
                                                 URL.build(path=m.group(2), encoded=True)))
        if not isinstance(info, MatchInfoError):
            info["api_version"] = m.group(1)
        return info


# Families of the Engine API that pallet does not serve yet: they answer 501
# with docker's JSON error rather than a bare 404.
UNIMPLEMENTED = (
    "/plugins{tail:.*}", "/session",
)


async def not_implemented(request: web.Request):
    path = re.sub(r"^/v[0-9.]+", "", request.path)
    raise errors.NotImplementedYet(f"pallet does not implement {request.method} {path} yet")


def make_app(kernel, service) -> web.Application:
    """The application with pallet's routes, then plugins' routes, then the 501 families."""
    from pallet.plugins.api_rest import handlers_containers, handlers_images, handlers_system

    import warnings

    with warnings.catch_warnings():  # aiohttp 3 marks the router argument deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        app = web.Application(router=VersionedRouter(), middlewares=[error_middleware],
                              client_max_size=1 << 40, handler_args={"max_field_size": 65536})
    app["kernel"] = kernel
    app["service"] = service
    routes = Routes(app)
    handlers_system.register(routes)
    handlers_containers.register(routes)
    from pallet.plugins.api_rest import handlers_exec, handlers_volumes
    handlers_exec.register(routes)
    handlers_volumes.register(routes)
    handlers_images.register(routes)
    from pallet.plugins.api_rest import handlers_networks  # network role (net_bridge)
    handlers_networks.register(routes)
    from pallet.plugins.api_rest import handlers_swarm  # swarm, plugins, registry look-ups
    handlers_swarm.register(routes)
    from pallet.plugins.api_rest import handlers_build  # builder role, and docker commit
    handlers_build.register(routes)
    kernel.hook.pallet_register_rest_routes(kernel=kernel, app=app)
    for path in UNIMPLEMENTED:
        routes.add("*", path, not_implemented)
    return app


# --- serving ---------------------------------------------------------------------

class RestProtocol:
    """The ``client_protocol`` role's object: the Docker Engine API over HTTP.

    ``serve(engine, listeners)`` serves an engine on sockets that the command
    opened (palletd's ``-H``: unix, tcp with TLS, fd://) until :meth:`stop`.
    """

    def __init__(self, kernel):
        self.kernel = kernel
        self._stop = asyncio.Event()

    async def serve(self, engine, listeners) -> None:
        """Serve ``engine`` on ``listeners`` until :meth:`stop` (the command
        that opened the listeners closes them)."""
        app = make_app(self.kernel, engine)
        await serve(app, listeners, self._stop)

    def stop(self) -> None:
        """Stop serving (safe to call from a signal handler on the loop)."""
        self._stop.set()


async def serve(app: web.Application, listeners, stop: asyncio.Event) -> None:
    """Serve on every listener until ``stop`` is set."""
    access = logging.getLogger("pallet.api_rest.access") if log.isEnabledFor(logging.DEBUG) \
        else None
    # long-lived answers (attach, logs -f, wait) must not hold the shutdown up
    runner = web.AppRunner(app, access_log=access, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        for listener in listeners:
            name, sock = listener
            if getattr(listener, "ssl", None) is not None:
                # TLS is terminated outside asyncio, which cannot half-close it
                listener.serve_tls(asyncio.get_running_loop(), runner.server)
                log.info("API listen on %s (TLS)", name)
                continue
            await web.SockSite(runner, sock).start()
            log.info("API listen on %s", name)
        # what start-up made (modules, plugins, state) lives as long as the
        # daemon: out of the collector's way, a full collection stays cheap
        import gc
        gc.freeze()
        await stop.wait()
    finally:
        await runner.cleanup()
