"""Pure logic of the pallet CLI: tabwriter, templates, flags, references."""

import pytest

from pallet.client import docker_flags as F
from pallet.client import docker_ref
from pallet.client.cmd_containers import ContainerRow, displayable_ports, get_timestamp
from pallet.client.cmd_images import image_rows
from pallet.client.docker_format import HeaderContext, go_quote, go_str, render_rows, tabwrite
from pallet.client.docker_template import Template, TemplateError

def test_tabwrite_like_go():
    assert tabwrite("A\tBB\tC\nxxxxxxxxxxxxxxx\ty\tz\n") == (
        "A                 BB        C\nxxxxxxxxxxxxxxx   y         z\n")
    # lines without a cell break the column block
    assert tabwrite("a\tb\nno tabs\nccc\td") == "a         b\nno tabs\nccc       d"


@pytest.mark.parametrize("tmpl,out", [
    ("{{.Name}}", "/c"),
    ("{{json .Config.Labels}}", '{"x":"<a&b>","é":"ü"}'),
    ("{{.Config.Labels}}", "map[x:<a&b> é:ü]"),
    ("{{.Config.Cmd}} {{json .Config.Cmd}}", '[sleep 100] ["sleep","100"]'),
    ("{{.Config.Entrypoint}}|{{json .Config.Entrypoint}}", "<no value>|null"),
    ('{{index .Config.Labels "x"}}', "<a&b>"),
    ("{{index .Config.Cmd 1}}", "100"),
    ('{{join .Config.Cmd ","}}', "sleep,100"),
    ("{{range .Config.Cmd}}[{{.}}]{{end}}", "[sleep][100]"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "x=<a&b>;é=ü;"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if not .State.Running}}down{{else if .Name}}named{{end}}", "named"),
    ("{{with .State}}{{.Pid}}{{end}}", "42"),
    ('{{printf "%s-%d" .Name .State.Pid}}', "/c-42"),
    ("{{.Name | upper}} {{lower \"AB\"}} {{len .Config.Cmd}}", "/C ab 2"),
    ("a {{- .Name -}} b", "a/cb"),
    ("{{$n := .Name}}{{$n}}", "/c"),
    ("{{eq .State.Pid 42}} {{ne .Name \"/c\"}}", "true false"),
    ("{{.HostConfig.LogConfig}}", "map[Config:map[] Type:json-file]"),
])
def test_template(tmpl, out):
    data = {"Name": "/c", "State": {"Running": True, "Pid": 42},
            "Config": {"Labels": {"x": "<a&b>", "é": "ü"}, "Cmd": ["sleep", "100"],
                       "Entrypoint": None},
            "HostConfig": {"LogConfig": {"Type": "json-file", "Config": {}}}}
    assert Template(tmpl).execute(data) == out


def test_template_errors():
    with pytest.raises(TemplateError) as e:
        Template("{{.Nope}}").execute({})
    assert str(e.value) == 'template: :1:2: executing "" at <.Nope>: map has no entry for key "Nope"'
    with pytest.raises(TemplateError) as e:
        Template("{{.Config.Foo.Bar}}").execute({"Config": {}})
    assert str(e.value).startswith('template: :1:9: executing "" at <.Config.Foo.Bar>')
    with pytest.raises(TemplateError):
        Template("{{")
    with pytest.raises(TemplateError):
        Template("{{if .X}}")
    with pytest.raises(TemplateError):
        Template("{{nosuchfunc .X}}").execute({"X": 1})


def test_go_values():
    assert go_str(1.0) == "1" and go_str(1.5) == "1.5" and go_str(True) == "true"
    assert go_str([1, "a", None]) == "[1 a <nil>]"
    assert go_quote("sh -c 'a \"b\"'") == '"sh -c \'a \\"b\\"\'"'


def _container(**kw):
    c = {"Id": "a" * 64, "Names": ["/web"], "Image": "busybox", "ImageID": "sha256:" + "b" * 64,
         "Command": "sleep 1000000000000000000", "Created": 1000, "Ports": [], "Labels": {"a": "b"},
         "State": "running", "Status": "Up 3 seconds", "Mounts": [],
         "NetworkSettings": {"Networks": {"none": {}}}}
    c.update(kw)
    return c


def test_ps_rows():
    rows = [ContainerRow(_container(), True, 1003)]
    out = render_rows("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}"
                      "\t{{.Ports}}\t{{.Names}}", rows, HeaderContext(ContainerRow))
    assert out.splitlines() == [
        "CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS         PORTS     NAMES",
        'aaaaaaaaaaaa   busybox   "sleep 1000000000000…"   3 seconds ago   Up 3 seconds             web',
    ]
    out = render_rows('table {{.Label "com.example.my-label"}}', rows, HeaderContext(ContainerRow))
    assert out.splitlines()[0] == "my label"
    js = render_rows("{{json .}}", rows, HeaderContext(ContainerRow))
    assert js.startswith('{"Command":"\\"sleep 1000000000000…\\"","CreatedAt":')


def test_ports_column():
    ports = [{"PrivatePort": 80, "Type": "tcp"}, {"PrivatePort": 81, "Type": "tcp"},
             {"IP": "0.0.0.0", "PrivatePort": 443, "PublicPort": 8443, "Type": "tcp"},
             {"IP": "::", "PrivatePort": 443, "PublicPort": 8443, "Type": "tcp"},
             {"PrivatePort": 53, "Type": "udp"}]
    assert displayable_ports(ports) == \
        "53/udp, 80-81/tcp, 0.0.0.0:8443->443/tcp, [::]:8443->443/tcp"


def test_image_rows():
    img = {"Id": "sha256:" + "c" * 64, "RepoTags": ["docker.io/library/busybox:latest", "foo/bar:1"],
           "RepoDigests": ["busybox@sha256:" + "d" * 64], "Created": 0, "Size": 1984234,
           "SharedSize": -1, "Containers": -1}
    rows = image_rows([img], digests=False, trunc=True, now=0)
    assert [(r.f_Repository(), r.f_Tag(), r.f_Digest(), r.f_ID()) for r in rows] == [
        ("busybox", "latest", "<none>", "c" * 12), ("foo/bar", "1", "<none>", "c" * 12)]
    rows = image_rows([img], digests=True, trunc=False, now=0)
    assert rows[0].f_Digest() == "sha256:" + "d" * 64 and rows[0].f_ID() == img["Id"]
    dangling = image_rows([{"Id": "sha256:" + "e" * 64, "RepoTags": None}], False, True, 0)
    assert (dangling[0].f_Repository(), dangling[0].f_Tag()) == ("<none>", "<none>")


def test_flags_like_pflag():
    flags = [F.Flag("interactive", "i", F.BOOL), F.Flag("tty", "t", F.BOOL),
             F.Flag("env", "e", F.LIST), F.Flag("name", kind=F.STR), F.Flag("last", "n", F.INT, -1)]
    opts, args = F.parse(["-it", "-eA=1", "-e", "B", "-e=C", "--name=x", "img", "cmd", "-x"],
                         flags, interspersed=False)
    assert opts.interactive and opts.tty and opts.env == ["A=1", "B", "C"] and opts.name == "x"
    assert args == ["img", "cmd", "-x"]
    opts, args = F.parse(["a", "-n", "3", "b", "--interactive=false"], flags)
    assert opts.last == 3 and args == ["a", "b"] and opts.interactive is False
    with pytest.raises(F.FlagError, match="unknown flag: --bogus"):
        F.parse(["--bogus"], flags)
    with pytest.raises(F.FlagError, match="unknown shorthand flag: 'x' in -x"):
        F.parse(["-x"], flags)
    with pytest.raises(F.FlagError, match="flag needs an argument: --name"):
        F.parse(["--name"], flags)
    with pytest.raises(F.HelpRequested):
        F.parse(["--help"], flags)


def test_references():
    assert docker_ref.split("localhost:5000/a/b:t@sha256:x") == ("localhost:5000/a/b", "t", "sha256:x")
    assert docker_ref.normalize_name("busybox") == "docker.io/library/busybox"
    assert docker_ref.familiar_name("docker.io/library/busybox") == "busybox"
    assert docker_ref.with_default_tag("127.0.0.1:1/x") == "127.0.0.1:1/x:latest"
    with pytest.raises(ValueError):
        docker_ref.validate("Bad")


def test_since_values():
    assert get_timestamp("1700000000") == "1700000000"
    assert get_timestamp("10m", now=1000.0) == "400.000000000"
    assert get_timestamp("2013-01-02T13:23:37Z") == "1357133017.000000000"
