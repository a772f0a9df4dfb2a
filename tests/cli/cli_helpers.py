"""Helpers of the CLI tests: pallet's output compared with the docker CLI's
on the same daemon."""

import uuid


def suffix():
    return uuid.uuid4().hex[:8]


def as_pallet(text):
    """docker's output with the program name swapped, for byte comparisons."""
    return text.replace("docker", "pallet")


def same_as_docker(d, *args, attempts=3, input=None):
    """pallet's (stdout, stderr, status) equals docker's for the same arguments.

    Times in columns ('2 seconds ago') can tick between the two runs, so
    docker runs before and after pallet and either answer counts.
    """
    for _ in range(attempts):
        before = d.docker(*args, input=input)
        mine = d.pallet(*args, input=input)
        after = d.docker(*args, input=input)
        for ref in (before, after):
            if (mine.stdout, mine.stderr, mine.returncode) == (
                    as_pallet(ref.stdout), as_pallet(ref.stderr), ref.returncode):
                return mine
    assert (mine.returncode, mine.stdout, mine.stderr) == (
        after.returncode, as_pallet(after.stdout), as_pallet(after.stderr))
    return mine


def same_effect(d, make_args, input=None):
    """Run a state-changing command once with docker and once with pallet, each
    on its own objects (``make_args(tag)`` gives the arguments for a tag);
    compare the outputs with the tag replaced."""
    ref = d.docker(*make_args("D"), input=input)
    mine = d.pallet(*make_args("P"), input=input)
    norm = lambda s: s.replace("docker", "pallet")  # noqa: E731
    return ref, mine, norm
